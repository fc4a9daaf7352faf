"""One family of errors for everything a user can fix.

``acqkit``'s command line prints an :class:`AcqkitError` as one line (no
traceback) and lets every other exception show its traceback, because that is
a bug. Each subclass also derives from the builtin it refines (``ValueError``,
``RuntimeError``), so ``except ValueError`` keeps working for callers.
"""
from __future__ import annotations


class AcqkitError(Exception):
    """Base of every error acqkit raises on purpose; the message says what to fix and where."""


class ConfigError(AcqkitError, ValueError):
    """A config field, flag or config file that cannot run; the message names the field or file."""


class UnknownComponent(AcqkitError, ValueError):
    """A component name that no plugin registered."""


class ComponentError(AcqkitError, ValueError):
    """A component spec that cannot be parsed or built."""


class PluginError(AcqkitError, RuntimeError):
    """A plugin's code raised; the message names the component, its plugin and package (see acqkit.guard)."""


class PluginOutputError(AcqkitError, ValueError):
    """A plugin returned something acqkit cannot use; the message names the plugin."""


class PromptError(AcqkitError, ValueError):
    """A prompt set (a file, a dataset, a plugin task) with a bad prompt; the message names where it is."""


class LedgerError(AcqkitError, ValueError):
    """A ledger file that cannot be opened or used; the message names the file."""


class RunDirError(AcqkitError, ValueError):
    """A run directory that cannot be written (taken, locked, not a directory, full); the message names it."""


class MissingFileError(AcqkitError, FileNotFoundError):
    """A file or directory the user named (a prompt file, a model directory) does not exist; the message names it."""


class ModelError(AcqkitError, RuntimeError):
    """A model that cannot be fetched or loaded (a download that failed); the message names it."""


class TrackerError(AcqkitError, RuntimeError):
    """An experiment tracker (``--track``) that cannot run: not installed, not logged in, a bad directory."""
