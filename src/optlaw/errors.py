"""Errors a user can act on.

``UserError`` carries a one-line message that names the problem and the fix; the
CLI prints it without a traceback and exits with status 2, before any compute.
"""


class UserError(Exception):
    """Bad input (config, data, paths). The message names the key and the fix."""


class ConfigError(UserError):
    """A config key or value is wrong."""
