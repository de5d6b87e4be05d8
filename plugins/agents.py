"""Built-in agents."""
from ldengine.agents import expert_agent
from ldengine.hookspecs import hookimpl


@hookimpl
def ldengine_register_agents(register):
    register("expert", expert_agent,
             "oracle selection: the manual's function for each stage, run in the sandbox")
