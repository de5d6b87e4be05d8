"""The hooks a plugin can implement.

Every hook receives a ``register`` callback (or the click group) and returns
nothing; the engine calls each plugin's implementation separately so it knows
which plugin registered what and a broken plugin cannot lock the others out.
Built-in plugins (``plugins.*``) use exactly these hooks. What each registered
object must have is a Protocol in ``ldengine.contracts`` (Task, EmergencyKind,
Agent, Evader, Student); an object that lacks a member is refused at registration.
"""
import pluggy

hookspec = pluggy.HookspecMarker("ldengine")
hookimpl = pluggy.HookimplMarker("ldengine")


@hookspec
def ldengine_register_tasks(register):
    """Register tasks: ``register(task)`` with a ``contracts.Task``: ``name``,
    ``description``, ``pipeline`` (the stage names of one decision step, in order),
    ``rules``, ``play(agent, game_index, seed, evader, emit)``, ``summarize(results)``
    and ``summarize_state(state)``; the optional members have typed defaults in
    ``contracts.TaskBase`` (subclass it, or be seen through ``contracts.adapt``). ``evader`` is the
    policy of the evader the user named, else of the task's own (its ``evader`` member), else None."""


@hookspec
def ldengine_register_functions(register):
    """Register function-base modules: ``register(task, source, filename)``
    with the module's source text. The source is never imported: it is compiled
    by the sandbox, and every docstring must be a manual entry (summary,
    Stage, Reads, Returns, Rules, Example)."""


@hookspec
def ldengine_register_evaders(register):
    """Register evader policies: ``register(name, policy, description)`` where
    ``policy(legal_cells, movers, rng)`` returns one of ``legal_cells`` (``contracts.Evader``)."""


@hookspec
def ldengine_register_agents(register):
    """Register agents: ``register(name, factory, description)`` where
    ``factory(context)`` gets an ``AgentContext`` and returns a ``contracts.Agent``:
    ``act(state) -> action`` and ``stats() -> dict`` (optional: ``act_batch``,
    ``last_functions``, ``last_stages``)."""


@hookspec
def ldengine_register_students(register):
    """Register student backends: ``register(name, loader, description)`` where
    ``loader(path=None, adapter=None)`` returns a ``contracts.Student``:
    ``select(prefix, query, options) -> Selection``, ``select_batch(items)``,
    ``generate(prompt) -> [text]``, ``generate_batch(prompts, prefix, max_new_tokens,
    stop) -> [text]`` (the text-answering agents use it), ``name``, ``model_hash`` and
    ``adapter_hash``. ``--backend NAME`` picks one."""


@hookspec
def ldengine_register_emergencies(register):
    """Register emergency kinds (new rules): ``register(kind)`` with a
    ``contracts.EmergencyKind``: ``name`` (lowercase words joined by hyphens), ``task``,
    ``stage``, ``after``, ``split`` ("eval" or "train"), ``params(seed, size)``,
    ``describe(params)``, ``allows(params, piece, src, dst)``, ``function_name()``,
    ``header(params, name)``, ``cases(params, seed)``, ``properties(input, output)`` and
    ``reference(params)`` (see ``ldengine.emergency``)."""


@hookspec
def ldengine_register_rule_languages(register):
    """Register a task's rule language: ``register(language)`` with a
    ``rulelang.RuleLanguage`` (``task``, ``stage``, ``primitives``, ``combinators``,
    ``max_depth``, ``max_primitives``, ``covers``, ``lacks``, ``manual()``,
    ``english(program)``, ``denotation(program)``, ``refusal(program)``,
    ``kind(program, text)``, ``picture(program)``, ``outside(text)`` (why words cannot be said in it, or None), ``examples(n, seed, split, wording)``,
    ``clause_examples(n, seed)``): what ``ldengine rules read`` and the reader parse rules
    in words into. One per task."""


@hookspec
def ldengine_register_commands(cli):
    """Add click commands to the ``ldengine`` group ``cli``."""
