"""The server behind ``ldengine serve``: the local student answering an OpenAI-compatible
HTTP API, with requests taking turns on the one model within budgets.

One job per module, lowest first (each imports only those above it in this list):

- ``limits``: what one request may ask of the model, and the refusal a client gets;
- ``turns``: the schedule, requests taking turns on the model one forward pass at a time;
- ``model``: the student's forward passes (generation, next tokens, prompt scores);
- ``requests``: a request's JSON body read and its fields checked, before any model work;
- ``endpoints``: what each endpoint answers, as plain dicts;
- ``http``: the FastAPI app (API key, body limits, JSON errors) around the endpoints;
- ``server``: uvicorn running the app on a socket it binds, loopback only without a key.
"""
