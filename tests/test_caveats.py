"""How results are read on the page: the verdict wording shared by the
Classify & explain and Compare tabs, flat curves, models whose classes may not
fit the image, the held-back methods' accordion, the Inside Swin hint and the
Attention lab's live plot. Plain functions; no model runs, no browser."""
import dataclasses
from types import SimpleNamespace

import gradio as gr
import numpy as np

import models
from demo import caveats, compare_tab, explain_tab, lab_tab, ui
from explain.faithfulness import Curves, Faithfulness

FRACTIONS = np.linspace(0, 1, 11)


def faith(deletion, insertion, random_deletion, random_insertion) -> Faithfulness:
    return Faithfulness(Curves(FRACTIONS, np.asarray(deletion, float), np.asarray(insertion, float)),
                        Curves(FRACTIONS, np.asarray(random_deletion, float), np.asarray(random_insertion, float)),
                        probability=float(deletion[0]))


def result(f: Faithfulness, name="efficientnet_lite0", class_name="Egyptian cat"):
    return SimpleNamespace(model_name=name, pretrained=True, method="gradcam", class_name=class_name,
                           probability=float(f.probability), seconds=0.5, faithfulness=f)


FALLING = np.linspace(0.9, 0.0, 11)
RISING = np.linspace(0.0, 0.9, 11)
SATURATED = np.full(11, 1.0) - np.linspace(0, 0.004, 11)


def test_a_saturated_probability_is_named_not_just_a_tie():
    f = faith(SATURATED, SATURATED[::-1], SATURATED, SATURATED[::-1])
    assert f.deletion_verdict() == "tie"
    assert caveats.verdict(f, "deletion") == "no signal (p stays 0.996-1.000)"
    note = caveats.flat_note(f, "7")
    assert "barely moves over the whole deletion and insertion curves" in note and "**7**" in note
    scores = explain_tab.scores_markdown(result(f, class_name="7"))
    assert "no signal" in scores and "barely moves" in scores and "too close to call" not in scores


def test_a_moving_curve_keeps_its_verdict_and_no_flat_note():
    worse = faith(RISING[::-1] * 0 + 0.8, RISING, FALLING, RISING * 0.5)  # deletion stays high: worse
    assert caveats.verdict(worse, "deletion") == "**worse than random**"
    assert caveats.verdict(worse, "insertion") == "beats random"
    assert caveats.flat_note(worse, "cat") == ""


def test_explain_and_compare_word_verdicts_the_same_way():
    f = faith(np.full(11, 0.8), RISING, FALLING, RISING * 0.5)
    scores = explain_tab.scores_markdown(result(f))
    column = compare_tab.column_markdown(result(f))
    for words in (caveats.verdict(f, "deletion"), caveats.verdict(f, "insertion")):
        assert words in scores and words in column
    # The guide says why "worse than random" happens; both tabs show it.
    assert "another class" in caveats.GUIDE and "rival class" in caveats.GUIDE and "saturated" in caveats.GUIDE


def digits_like_spec():
    return dataclasses.replace(models.get_spec("efficientnet_lite0"), name="my_tiny_model", input_size=(3, 16, 16),
                               num_classes=10, label_set="names", label_names=tuple(str(i) for i in range(10)),
                               description="trained on digits")


def test_a_model_with_few_classes_and_tiny_inputs_warns_on_a_big_image():
    note = caveats.class_fit_note(digits_like_spec())
    assert "**my_tiny_model** knows only 10 classes (0, 1, 2, 3, ..., 9) and sees 16 x 16 pixels" in note
    assert "means little" in note
    assert caveats.class_fit_note(models.get_spec("efficientnet_lite0")) == ""
    # Beside a result: that note, and the seeing note only where the model cannot see the image well.
    assert caveats.image_notes(digits_like_spec(), (451, 300)) == [note]
    lite0 = models.get_spec("efficientnet_lite0")
    assert caveats.image_notes(lite0, (451, 300)) == [] and caveats.image_notes(lite0) == []
    assert caveats.image_notes(lite0, (30, 30)) == [caveats.seeing_note(lite0, 30, 30)]
    assert "enlarged 8.5 times" in caveats.seeing_note(lite0, 30, 30)


def test_compare_warns_beside_a_narrow_models_result():
    f = faith(FALLING, RISING, FALLING * 0.9, RISING * 0.9)
    name = "swin_cifar"  # 10 classes at 32 x 32: what the spec knows, not its name
    column = compare_tab.column_markdown(result(f, name=name, class_name="cat"), (451, 300))
    assert "⚠️" in column and "knows only 10 classes" in column and "32 x 32" in column
    assert "knows only" not in compare_tab.column_markdown(result(f), (451, 300))


def test_held_back_methods_sit_in_a_closed_accordion():
    offered, held_back = explain_tab.explaining.offered_methods("efficientnet_lite0")
    with gr.Blocks():
        parts = explain_tab.build_explain_section(
            explain_tab.ExplainCallbacks(None, None), gr.Image(), gr.Dropdown(["efficientnet_lite0"]), gr.Label(),
            "efficientnet_lite0", {}, {})
    box = parts["held_back_box"]
    assert isinstance(box, gr.Accordion) and box.open is False and box.label == explain_tab.HELD_BACK_TITLE
    assert box.visible is bool(held_back)
    _, note, update = explain_tab.ExplainCallbacks.on_architecture("efficientnet_lite0", "gradcam")
    assert note == explain_tab.held_back_markdown(held_back) and update["visible"] is bool(held_back)


def test_inside_swin_hint_names_what_the_model_is_not_its_prefix():
    assert "swin_*" not in ui.architecture_info("efficientnet_lite0")
    assert "convolutional network" in ui.architecture_info("efficientnet_lite0")
    assert "Look inside it in the Inside Swin tab" in ui.architecture_info("swin_cifar")


def test_live_plot_is_by_step_with_markers_and_a_one_seed_title():
    runs = [dict(variant="fused", steps=20, history=[dict(val_accuracy=0.3)])]
    fig = lab_tab.live_curves_figure(runs, ["fused"], steps_per_epoch=22)
    ax = fig.axes[0]
    line = ax.get_lines()[0]
    assert list(line.get_xdata()) == [20] and line.get_marker() == "o"
    assert ax.get_xlabel() == "training step" and "seed 0" in ax.get_title() and "std" not in ax.get_title()
    runs = [dict(variant="fused", steps=50, history=[dict(val_accuracy=a) for a in (0.2, 0.4, 0.5)])]
    assert list(lab_tab.live_curves_figure(runs, ["fused"], 22).axes[0].get_lines()[0].get_xdata()) == [22, 44, 50]


def test_result_tables_get_full_width_and_never_break_inside_words():
    assert ".result-table th, .result-table td {overflow-wrap: normal; word-break: normal" in ui.CSS
    with gr.Blocks() as demo:
        lab_tab.build_lab_tab()
    report = next(c for c in demo.blocks.values() if getattr(c, "elem_id", None) == "lab-recorded")
    assert "result-table" in report.elem_classes and not isinstance(report.parent, gr.Row)
    assert not report.value.startswith("# ") and "#### Validation accuracy" in report.value


def test_classify_warns_when_the_models_classes_may_not_fit():
    from demo import gate
    from demo.service import InferenceService, Settings

    callbacks = ui.Callbacks(InferenceService(Settings(torch_threads=1)))
    cat = gate.open_server_file(ui.EXAMPLES_DIR / "cat.jpg")
    _, _, notice, _ = callbacks.classify_ui(cat, "swin_cifar", 3)
    assert notice["visible"] and "⚠️ **swin_cifar** knows only 10 classes" in notice["value"]
    _, _, notice, _ = callbacks.classify_ui(cat, "efficientnet_lite0", 3)
    assert not notice["visible"] and "knows only" not in notice["value"]
