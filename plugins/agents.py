"""Built-in agents."""
from ldengine.agents import expert_agent
from ldengine.hookspecs import hookimpl
from ldengine.ld import ld_agent


@hookimpl
def ldengine_register_agents(register):
    register("expert", expert_agent,
             "oracle selection: the manual's function for each stage, run in the sandbox")
    register("ld", ld_agent,
             "Logic Distillation: retriever top-K + fine-tuned student select each stage's function")
