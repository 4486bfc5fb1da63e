"""The execution service: one simulated episode per `POST /execute`."""
