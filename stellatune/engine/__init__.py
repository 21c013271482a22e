"""The real-time engine: hot-path core modules, the DSP chain and audio output."""
