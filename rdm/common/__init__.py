"""Stage-free helpers every stage may use: atomic files (``files``), number bounds (``bounds``), JSON lines
(``jsonl``), secrets kept out of what is stored (``redact``), and the one allow-listed way to read and decode an
untrusted image file (``sources``). Imports only ``rdm.errors``; import the module you need by its name.
"""
