"""A model folder's files read and checked in a child process before the server parses any of them (`run.vet`):
their sizes, model.json's nesting, node count and input size, the safetensors header's size and tensors, and a text
model's tokenizer (parsed, probed with adversarial texts by `tokenizer_probe`, its ids checked against the
embedding table). The child (`child`, `checks`, `tokenizer_probe`) imports only the standard library and
tokenizers, so it starts in a tenth of a second; whatever a hostile file costs (time, memory, a Rust panic, a
regular expression that never ends) is spent there, under a time limit, and never holds the server's GIL.

Imports: service.errors (its message bound, in the child too), service.settings (the parent side only).
"""
