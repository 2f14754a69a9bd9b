"""Training methods: declarative specs in `specs.py`, one module per method with `train(context)`."""
