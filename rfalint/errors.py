"""User-facing errors. The CLI prints these as one line and exits with code 2."""


class RfalintError(Exception):
    """An error caused by the user's input, not by a bug in rfalint."""


class UsageError(RfalintError):
    """Bad command-line values (resolution, arguments, options)."""


class LoadError(RfalintError):
    """The model target cannot be found, imported or constructed."""


class ModelError(RfalintError):
    """The model was loaded but cannot be run or analysed at this resolution."""


class CollapseError(ModelError):
    """A feature map collapses below one position: the model cannot run this small."""
