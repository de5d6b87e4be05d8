"""The ``openai`` student backend: selections scored by an OpenAI-compatible server
(``ldengine serve``, or any server with ``/v1/completions`` log-probabilities)."""
from ldengine.hookspecs import hookimpl
from ldengine.models.openai_student import load_openai_student


@hookimpl
def ldengine_register_students(register):
    register("openai", load_openai_student,
             "selection over HTTP from an OpenAI-compatible server such as `ldengine serve` "
             "(address openai:http://HOST:PORT/v1#MODEL, default $LDENGINE_STUDENT_URL or 127.0.0.1:8000)")
