"""Emergencies: a new rule appears, the student writes a function for it (Eq. 6 of
the paper), the isolated sandbox verifies it, and the function base takes it in.

One job per module, lowest first (each imports only those above it in this list):

- ``verify``: the exhaustive check of a candidate function in the isolated worker;
- ``write``: the writing prompt, the student's attempts, what one writing produced;
- ``store``: verified functions and their provenance under ``function_base/TASK/emergencies``;
- ``rule``: the rule in force on a game (a registered kind or a stored function);
- ``adopt``: what an agent does when the rule appears (a stored function, or a new one);
- ``teach``: training data for writing and for selecting the new stage's function;
- ``measure``: the emergencies table (writing pass rates and games under each rule).

An emergency kind is a plugin object (``ldengine_register_emergencies``; its members
are listed by ``ldengine.contracts.EmergencyKind``): where its function goes in the
pipeline, its parameters, its rule in words, the def line and manual entry the engine
writes (the student writes the body), cases, properties and the teacher's reference.

Generated code is hostile until proven otherwise: every candidate is compiled with the
sandbox's policy, but loaded and run only in an ``IsolatedSandbox`` worker (CPU,
memory, wall-clock limits), during verification and during play alike. A stored
function is refused (``StoredCodeChanged``) when its file no longer has the sha256 its
provenance recorded, then verified again.
"""
