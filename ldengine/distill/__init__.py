"""``ldengine distill``: a teacher (L-LLM) turns a task's rules into a function base.

Step 1 of the paper's Algorithm 1. The teacher, any OpenAI-compatible chat
endpoint, gets the task's rules and stage list and answers with one Python
module in the function-base conventions (docs/plugins.md, "Add a function as a plugin"). The engine checks it:

1. ``code``: the answer holds a Python code block;
2. ``compile``: the sandbox's policy and RestrictedPython compiler accept it;
3. ``manual``: every top-level function's docstring is a manual entry, and the
   module has a VERSION;
4. ``examples``: every docstring Example gives its documented value;
5. ``stages``: every pipeline stage has exactly one function;
6. ``games``: the ``expert`` agent on the new base plays seeded games with no
   violation, no function error and no game error;
7. ``task``: the task's own properties, when it has ``distill_checks(base)``
   (a list of problems, empty when all hold).

The teacher's code is untrusted until it passes: every call during the checks
runs in the isolated worker (``IsolatedSandbox``), so a function that hangs or
crashes fails its check instead of the command. When checks fail, the teacher
gets the failures and is asked for the whole module again, up to ``rounds``
answers. A module that passes is stored as a new version,
``function_base/TASK/versions/distilled-HASH/`` (module + ``provenance.json``),
never overwriting one; one that never passes stores nothing. Its provenance
records the module file's sha256 and a hash over the module's whole text:
loading refuses a version changed afterwards (``functionbase.base_for``).

One job per module, lowest first (each imports only those above it in this list):

- ``check``: the checks of one answer, run in the isolated worker;
- ``prompt``: what the teacher is told, first and after a failed answer;
- ``store``: a checked module stored as a new version, and the versions listed;
- ``conversation``: ask, check, ask for repairs; store the first module that passes.
"""
