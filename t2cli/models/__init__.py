"""Models: built-in GGUF models (`builtin`), the safetensors checkpoint reader (`checkpoint`), target
matching (`matching`), fingerprints (`fingerprint`) and loading a spec (`loading`)."""
