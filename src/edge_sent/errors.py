"""The one exception type for user errors: the CLI prints its message on one line and exits non-zero."""


class EdgeSentError(Exception):
    """A problem with the user's input (files, options, bundles): reported without a traceback."""


class BundleError(EdgeSentError):
    """A bundle that is missing, incomplete, altered or from an unknown format version."""
