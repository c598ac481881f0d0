"""The persistent handler process splunkd starts for ``scripttype = persist`` endpoints (a stand-in).

The wire protocol on stdin/stdout, as splunkd speaks it:

request packet (splunkd -> process):
    one opcode byte: bit 0x01 start of a request, 0x02 a data block follows, 0x04 end of the request
    (0x08 streaming allowed); newlines before it are ignored.
    with 0x01: ``<n>\\n`` then n strings (the command: script path, then script.arg.<N>), then one
    string (script.param, may be empty). A string is ``<byte length>\\n<bytes>``.
    with 0x02: one string, the block (the request as JSON).
reply (process -> splunkd), strings in the same ``<length>\\n<bytes>`` form:
    after a start: the empty string when the script loaded, else the error text;
    after a block: the handler's answer (a dict is sent as JSON).

The script named by the command is imported once and kept (module-level state survives between
requests, as it does in Splunk); its one class deriving from PersistentServerConnectionApplication
(matched by name) is instantiated per request.
"""

import importlib.util
import inspect
import json
import os
import sys

BASE_NAME = "PersistentServerConnectionApplication"
START, BLOCK, END = 0x01, 0x02, 0x04


def _read_line(stream):
    data = b""
    while True:
        byte = stream.read(1)
        if not byte:
            if not data:
                raise EOFError
            return data
        if byte == b"\n":
            return data
        data += byte


def _read_number(stream):
    while True:
        line = _read_line(stream)
        if line:
            return int(line)


def _read_string(stream):
    size = _read_number(stream)
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def _write(stream, value):
    if isinstance(value, dict):
        value = json.dumps(value, separators=(",", ":"))
    if isinstance(value, str):
        value = value.encode("utf-8")
    stream.write(b"%d\n" % len(value))
    stream.write(value)


_modules = {}


def _handler_class(path):
    if path not in _modules:
        name = "pschand__" + "".join(c if c.isalnum() else "_" for c in os.path.splitext(path)[0])
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        found = [c for _, c in inspect.getmembers(module, inspect.isclass)
                 if c.__name__ != BASE_NAME and any(k.__name__ == BASE_NAME for k in c.mro())]
        if len(found) != 1:
            raise NotImplementedError("%d classes implement %s in %s" % (len(found), BASE_NAME, path))
        _modules[path] = found[0]
    return _modules[path]


def serve(stdin, stdout):
    handler = None
    while True:
        while True:
            opbyte = stdin.read(1)
            if not opbyte:
                return
            if opbyte != b"\n":
                break
        opcode = opbyte[0]
        if opcode & START:
            command = [_read_string(stdin).decode("utf-8") for _ in range(_read_number(stdin))]
            argument = _read_string(stdin).decode("utf-8") or None
            try:
                handler = _handler_class(command[0])(command[1:], argument)
                _write(stdout, "")
            except Exception as error:  # reported to splunkd, the process stays up
                handler = None
                _write(stdout, "Can't load script \"%s\": %s" % (command[0] if command else "", error))
        if opcode & BLOCK:
            block = _read_string(stdin)
            answer = handler.handle(block) if handler is not None else ""
            _write(stdout, "" if answer is None else answer)
        if opcode & END:
            if handler is not None:
                handler.done()
            handler = None
        stdout.flush()


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer)
