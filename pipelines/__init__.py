"""One thin script per DVC stage. Each reads its own params.yaml section and calls the core (``ldp``)."""
