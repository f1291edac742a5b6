"""The package version and the wire protocol version."""

__version__ = "0.1.0"

#: Version of the event and command shapes; bumped on incompatible change.
PROTOCOL_VERSION = 1
