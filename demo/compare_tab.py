"""The "Compare" tab: one image, two or three architectures side by side
(top-5 probabilities, Grad-CAM over the model input, deletion / insertion
scores beside a random map's), so a user sees where a CNN and a Swin look."""
from __future__ import annotations

import gradio as gr

import models
from demo import arguments, caveats, explaining, gate, panels

MAX_COLUMNS = 3
# Two that work offline: a CNN and a (trained) Swin.
DEFAULT_ARCHITECTURES = [models.OFFLINE_DEFAULT, "swin_digits"]


def architectures_argument(value) -> list[str]:
    """Two or three of models.list_models() (checked at the gate)."""
    if not isinstance(value, (list, tuple)) or len(value) > 10:
        raise arguments.ArgumentError("architectures must be a list of two or three architecture names.")
    return [arguments.choice("architectures", name, models.list_models()) for name in value]


def column_markdown(result: explaining.Explanation, image_size: tuple[int, int] | None = None) -> str:
    """A column's text: the model, its top-1 class, the AUCs in a short table, the verdicts in
    the Classify & explain tab's words, and a note where the curves are flat or the model's
    classes may not fit the image (``image_size``: width, height)."""
    f = result.faithfulness
    s = f.scores()
    weights = "" if result.pretrained else " · **untrained weights**"
    notes = caveats.image_notes(models.get_spec(result.model_name), image_size)
    parts = [f"**{result.model_name}**{weights}",
             f"Grad-CAM for **{result.class_name}** (p = {result.probability:.3f})"] + [f"⚠️ {n}" for n in notes]
    parts += [f"| AUC | map | random |\n|---|---|---|\n"
              f"| deletion ↓ | {s['deletion_auc']:.3f} | {s['random_deletion_auc']:.3f} |\n"
              f"| insertion ↑ | {s['insertion_auc']:.3f} | {s['random_insertion_auc']:.3f} |",
              f"Deletion: {caveats.verdict(f, 'deletion')}; insertion: {caveats.verdict(f, 'insertion')}."]
    flat = caveats.flat_note(f, result.class_name)
    parts += ([flat] if flat else []) + [f"{result.seconds:.1f} s"]
    return "\n\n".join(parts)


class CompareCallbacks:
    def __init__(self, service, open_image):
        self.service = service
        self.open_image = open_image

    def compare(self, image, architectures):
        """Per column (title + scores markdown, top-5 label value, overlay),
        flattened; an architecture whose weights cannot be had says so in
        its column and the others still run."""
        architectures = list(dict.fromkeys(architectures or []))
        if image is None or image == "":
            raise gate.refuse("No image was given; upload a photo or pick an example first.", "compare")
        if not 2 <= len(architectures) <= MAX_COLUMNS:
            raise gate.refuse(f"Pick two or three architectures to compare (you picked {len(architectures)}).",
                              "compare")
        picture = self.open_image(image)
        outputs = []
        for column in range(MAX_COLUMNS):
            if column >= len(architectures):
                outputs += [gr.update(value="", visible=False), gr.update(value=None, visible=False),
                            gr.update(value=None, visible=False)]
                continue
            name = architectures[column]
            try:
                result = explaining.explain_image(self.service, picture, name, "gradcam", "top1")
            except (models.WeightsUnavailableError, explaining.ExplanationError) as error:
                outputs += [gr.update(value=f"**{name}**: {error}", visible=True),
                            gr.update(value=None, visible=False), gr.update(value=None, visible=False)]
                continue
            size = picture.info.get("original_size", picture.size)  # as uploaded, before a strip was cut
            outputs += [gr.update(value=column_markdown(result, size), visible=True),
                        gr.update(value=result.top, visible=True),
                        gr.update(value=panels.enlarged(result.overlay(0.5)), visible=True)]
        return outputs


def build_compare_tab(callbacks: CompareCallbacks, image, model_events: dict) -> dict:
    gr.Markdown("Where do a CNN and a Swin look? The image on the left, classified by two or three "
                "architectures, each with its Grad-CAM map for its own top-1 class and the map's faithfulness "
                "scores.", elem_classes="view-note")
    with gr.Row():
        chosen = gr.CheckboxGroup(models.list_models(), value=DEFAULT_ARCHITECTURES,
                                  label="Architectures (2 or 3)", elem_id="compare-architectures", scale=4)
        button = gr.Button("Compare", variant="primary", elem_id="compare-button", scale=1)
    outputs = []
    with gr.Row(equal_height=False):
        for column in range(MAX_COLUMNS):
            with gr.Column(min_width=220):
                outputs.append(gr.Markdown(elem_id=f"compare-text-{column}", elem_classes="result-table"))
                outputs.append(gr.Label(num_top_classes=5, show_label=False, visible=False,
                                        elem_id=f"compare-label-{column}"))
                outputs.append(gr.Image(type="numpy", format="png", interactive=False, show_label=False,
                                        visible=False, elem_id=f"compare-overlay-{column}"))
    gr.Markdown("↓: lower is better; ↑: higher is better. " + caveats.GUIDE, elem_id="compare-guide",
                elem_classes="view-note")
    gate.guard(chosen, architectures_argument, "architectures")
    button.click(callbacks.compare, [image, chosen], outputs, api_visibility="private", **model_events)
    return dict(chosen=chosen, button=button, outputs=outputs)
