"""User-facing errors.

Every error a user can cause (a wrong path, a corrupt file, an unsupported model, a prompt that does
not fit) is an ``OndolError`` whose message is written for that user: the CLI prints it without a
traceback and exits non-zero, the server turns it into a 4xx. Anything else is a bug in ondol.
"""


class OndolError(Exception):
    """Base class: ``str(err)`` is a complete sentence meant for the user."""


class ModelNotFoundError(OndolError):
    """The path does not exist or holds no model ondol recognises."""


class ModelFormatError(OndolError):
    """A model file is corrupt, truncated or of a format ondol refuses (e.g. pickle)."""


class UnsupportedModelError(OndolError):
    """A well-formed model whose architecture, rope type or tensor type ondol does not run."""


class ChatTemplateError(OndolError):
    """A chat template failed to render or tried something the sandbox forbids."""


class InvalidRequestError(OndolError):
    """Bad generation input: empty prompt, prompt longer than the context, bad sampling values."""
