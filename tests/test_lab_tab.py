"""The Attention lab tab's callbacks, without a browser: live init
statistics, the recorded comparison, a short live comparison and its
cancellation; and the tab builds inside a page."""
import gradio as gr
import pytest

from demo import lab_tab
from training.lab import build_model, init_statistics


# Tiny models: on a busy 2-core machine a second thread only waits for the
# first (a lab step took 2 s with 2 threads, 0.1 s with one).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_init_statistics_rows_are_the_labs_statistics():
    rows = lab_tab.init_statistics_rows(["fused", "parameter_randn"])
    assert [r[0] for r in rows] == ["fused", "parameter_randn"] and all(len(r) == len(lab_tab.INIT_HEADERS)
                                                                        for r in rows)
    data = lab_tab.lab_data()
    direct = init_statistics(build_model(lab_tab.LAB, "parameter_randn", 0), data.train_x[:lab_tab.INIT_BATCH],
                             data.train_y[:lab_tab.INIT_BATCH])
    assert rows[1][1] == round(direct.logit_std, 4) and rows[1][3] == f"{100 * direct.saturated_rows:.1f} %"


def test_choosing_no_variant_is_one_sentence():
    with pytest.raises(gr.Error, match="Pick at least one attention variant"):
        lab_tab.init_statistics_rows([])
    with pytest.raises(gr.Error, match=r"steps must be a whole number from 20 to 600, not 5\."):
        next(lab_tab.live_comparison(["fused"], 5))


def test_recorded_comparison_without_a_report_says_how_to_make_one(tmp_path):
    text, curves = lab_tab.recorded_comparison(tmp_path)
    assert "python -m training lab" in text and curves is None


def test_recorded_comparison_shows_the_committed_report():
    text, curves = lab_tab.recorded_comparison()
    assert text.startswith("# Attention lab: results") and "Command: `python -m training lab" in text
    assert curves and curves.endswith("curves.png")


def test_live_comparison_trains_each_variant_and_draws_its_curve():
    seen = []
    outputs = list(lab_tab.live_comparison(["fused", "separate"], 20, session="t1",
                                           progress=lambda fraction, desc: seen.append(fraction)))
    status, figure = outputs[-1]
    assert "**fused**" in status and "**separate**" in status and "after 20 steps" in status
    legend = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert legend == ["fused", "separate", "chance (10 %)"] and figure.axes[0].get_xlabel() == "training step"
    assert seen[-1] == pytest.approx(1.0) and seen == sorted(seen)


def test_cancel_stops_after_the_current_step_and_keeps_what_finished():
    def progress(fraction, desc):
        if fraction >= 3 / 40:
            lab_tab.request_stop("t2")

    outputs = list(lab_tab.live_comparison(["fused", "separate"], 20, session="t2", progress=progress))
    status = outputs[-1][0]
    assert "(stopped)" in status and "**separate**" not in status and "Stopped" in status


def test_the_tab_builds_inside_a_page():
    with gr.Blocks() as demo:
        with gr.Tab("Attention lab"):
            lab_tab.build_lab_tab()
    ids = {getattr(c, "elem_id", None) for c in demo.blocks.values()}
    assert {"lab-variants", "lab-init", "lab-start", "lab-cancel", "lab-curves"} <= ids


@pytest.mark.parametrize("argument, value, says", [
    ("steps", float("nan"), "steps must be a whole number"), ("steps", float("inf"), "steps must be a whole number"),
    ("steps", "abc", "steps must be a whole number"), ("steps", 10_000, "steps must be a whole number"),
    ("variants", "fused", "variants must be a list"), ("variants", ["fused", "nope"], "variants must be one of"),
    ("variants", [3], "variants must be one of"),
])
def test_the_lab_events_arguments_are_checked_at_the_boundary(argument, value, says):
    parts = dict(variants=gr.CheckboxGroup(lab_tab.VARIANTS), steps=gr.Slider(lab_tab.MIN_STEPS, lab_tab.MAX_STEPS))
    lab_tab.guard_lab_arguments(**parts)
    with pytest.raises(gr.Error) as info:
        parts[argument].preprocess(value)
    assert info.value.message.startswith(says) and info.value.print_exception is False, info.value.message
    assert parts["steps"].preprocess(None) == lab_tab.DEFAULT_STEPS and parts["variants"].preprocess(None) == []


def test_infinite_steps_are_one_sentence_without_a_traceback():
    for steps in (float("inf"), float("nan"), None, "abc"):
        with pytest.raises(gr.Error, match="steps (must be a whole number|is missing)") as info:
            next(lab_tab.live_comparison(["fused"], steps))
        assert info.value.print_exception is False


def test_the_live_run_keeps_the_one_training_at_a_time_rule():
    from training import recipes

    with recipes.busy():  # the Train tab's (or another page's) training
        with pytest.raises(gr.Error, match="already running") as info:
            next(lab_tab.live_comparison(["fused"], 20, session="t3"))
        assert info.value.print_exception is False
    run = lab_tab.live_comparison(["fused"], 20, session="t4")
    next(run)
    assert recipes.training_running()  # held while the lab trains: the Train tab refuses meanwhile
    run.close()
    assert not recipes.training_running()
