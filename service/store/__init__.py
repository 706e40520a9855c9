"""The model store: the on-disk format (model.json + weights.safetensors), the registry of loaded models, and the
converter from a user's nn.Module."""
