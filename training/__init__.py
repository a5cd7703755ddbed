"""Training: fine-tune a model on a folder of images, train a Swin from
scratch, predict with a trained model; no Gradio here. The command line is
``python -m training {finetune,scratch,predict} ...`` (see
``python -m training --help``).

For other code (the app's Train tab, the attention lab):

- :func:`fit` ``(model_factory, train_data, val_data, recipe, *, train_mode,
  on_epoch, should_stop, progress)`` -> :class:`TrainResult`: the loop.
- :class:`Recipe`: optimiser, schedule, budget (``epochs``, ``max_steps``).
- :func:`finetune`, :func:`scratch`, :func:`predict`: the commands.
- :func:`digits_dataset`, :func:`stratified_split`, :func:`scratch_spec`:
  the pieces of ``scratch`` a comparison reuses.
"""
from .data import ImageDataset, digits_dataset, load_image_folder, safe_extract_zip, stratified_split
from .errors import TrainingInputError
from .loop import Recipe, TrainResult, cosine_factor, evaluate, fit
from .recipes import (RunResult, check_model_name, digits_train_transform, finetune, predict, scratch, scratch_spec,
                      training_running)

__all__ = ["ImageDataset", "Recipe", "RunResult", "TrainResult", "TrainingInputError", "check_model_name",
           "cosine_factor", "digits_dataset", "digits_train_transform", "evaluate", "finetune", "fit",
           "load_image_folder", "predict", "safe_extract_zip", "scratch", "scratch_spec", "stratified_split",
           "training_running"]
