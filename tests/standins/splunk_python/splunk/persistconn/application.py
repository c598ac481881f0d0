"""Base class of persistent REST handlers, as ``splunk.persistconn.application`` provides it."""


class PersistentServerConnectionApplication:
    """Subclass it and implement ``handle(in_string)``; the server makes one object per request with
    ``(command_line, command_arg)`` and calls ``handle`` with the request (JSON), then ``done()``."""

    def __init__(self):
        pass

    def handle(self, in_string):
        raise NotImplementedError("PersistentServerConnectionApplication.handle")

    def handleStream(self, handle, in_string):
        raise NotImplementedError("PersistentServerConnectionApplication.handleStream")

    def done(self):
        pass
