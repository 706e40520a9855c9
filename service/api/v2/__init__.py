"""The Open Inference Protocol (KServe V2, REST): its routes (`routes`), its codec around the one pipeline (`codec`),
its tensors in JSON and the binary extension (`tensors`), its bodies as pydantic models (`schemas`) and its own error
form (`route`)."""
