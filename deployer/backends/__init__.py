"""Container engines: the Backend protocol (base.py) and its implementations (docker.py)."""
