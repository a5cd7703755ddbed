"""The one error a user can cause while training: its message is one sentence
that says what to do next, shown as is by the CLI and the app."""


class TrainingInputError(ValueError):
    """Bad data, bad arguments or a busy trainer; ``str(error)`` is the sentence."""
