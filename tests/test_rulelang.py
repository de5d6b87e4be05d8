"""Rules in words read into a task's rule language (ldengine/rulelang/, pursuit's
plugins/pursuit/rule_program.py): programs print and parse back, compile to the rule they
name, the grammar built for a text admits exactly the programs whose numbers the text
states, and the student's constrained answers are always programs of the language."""
import itertools

import pytest

from ldengine import rulelang as rl
from ldengine.errors import LDEngineError
from ldengine_plugins.pursuit import rule_program as rp
from ldengine_plugins.pursuit import rule_shapes as rs

LANGUAGE = rp.PursuitRules()


@pytest.fixture(scope="module")
def tokenizer():
    from ldengine.models.loading import load_student
    return load_student().tokenizer


def test_programs_print_parse_and_compile_to_their_rule():
    """Every drawn rule of both splits: its program prints, parses back to itself, and
    forbids exactly the moves the rule forbids."""
    rules = rs.draw_rules(300, seed=5, split="train") + rs.draw_rules(100, seed=5, split="eval")
    for rule in rules:
        program = rp.program_of(rule.region)
        assert rl.parse_program(rl.program_text(program)) == program
        assert rp.mask(program) == rs.region_mask(rule.region, rs.move_domain())
        assert rp.kind(program, rule.text).condition({}) == rule.cond


def test_bad_programs_are_refused_in_one_line():
    for text in ("column(5", "column(x)", "__import__('os')", "column(5) + 1", "column(5, k=2)", "5"):
        with pytest.raises(LDEngineError, match="not a program"):
            rl.parse_program(text)
    for program, words in ((("circle", 3), "no primitive"), (("column",), "takes 1"), (("x_mod", 4, 1), "not one of"),
                           (("Not", ("column", 2), ("row", 3)), "takes 1"), (("x_mod", 2, 2), "below")):
        with pytest.raises(rp.ProgramError, match=words):
            rp.region(program)
    assert rp.usable(("Or", ("column", 5), ("column", 5))) is not None      # a clause that adds nothing
    assert rp.usable(("column", 5)) is None


def test_numbers_come_from_the_text():
    assert rl.numbers_in("cells (x, y) with 3 <= x <= 7, y0 <= y and x - y == -2; column 10.") == [3, 7, -2, 10]
    assert rl.numbers_in("no numbers here") == []


def test_the_clause_grammar_admits_each_clauses_primitive_and_no_other_numbers(tokenizer):
    """Built for one clause's words (held-out wordings), the grammar accepts the clause's
    primitive token by token, and ``none``; it refuses a number the clause does not state."""
    for rule in rs.draw_rules(40, seed=2, split="eval", wording="eval"):
        for prim in rs.primitives_of(rule.region):
            words = prim.eval_words[0]
            lark = rl.clause_grammar(LANGUAGE, rl.numbers_in(words))
            for answer in (" " + rl.program_text(prim.call), " none"):
                mask = rl.GrammarMask(tokenizer, lark)
                tokens = tokenizer(answer, add_special_tokens=False)["input_ids"]
                for i, token in enumerate(tokens):
                    assert mask(tokens[:i])[token], (words, answer, i)
                mask(tokens)
                assert mask.matcher.is_accepting()
    mask = rl.GrammarMask(tokenizer, rl.clause_grammar(LANGUAGE, [5]))
    tokens = tokenizer(" column(6)", add_special_tokens=False)["input_ids"]
    assert not all(mask(tokens[:i])[t] for i, t in enumerate(tokens))


def _gold(text, program, wording):
    """Is the rule's own tree among the parses of its words (each clause exactly one primitive's
    words, composed to the rule's denotation)?"""
    own = rl.own_clauses(LANGUAGE, program, rp.words if wording == rp.TAUGHT else
                         (lambda prim: rp.region(prim).words(wording)))
    for forbids, words in rl.regions(LANGUAGE, text):
        for parse in rl.parses(LANGUAGE, words):
            if all(c in own for c in parse.clauses()):
                got, _ = rl.compose(parse, {c: (own[c], 0.0) for c in parse.clauses()})
                got = got if forbids else rl._negated(got)
                if rp.mask(got) == rp.mask(program):
                    return parse
    return None


@pytest.mark.slow
def test_the_splitter_finds_every_rules_own_tree_among_its_parses():
    """Frames and connectives split the words of every drawn rule, of both splits and every
    wording (the teacher's paraphrases the reader is taught too), so that one parse is the rule's
    tree; written with parentheses, it is not bare."""
    for split, wording, seed in (("train", "train", 7), ("eval", "eval", 7), ("train", "eval", 8),
                                 ("train", rp.TAUGHT, 9)):
        for text, program in rp.examples(60, seed, split, wording):
            parse = _gold(text, program, wording)
            assert parse is not None, text
            assert parse.bare == 0, text


def test_a_bare_compound_operand_and_an_allowing_frame():
    """"A and B or C" has two trees, each with a bare operand; "needs" names the allowed moves."""
    trees = rl.parses(LANGUAGE, "x == 3 and y == 4 or x == 9")
    compound = [p for p in trees if p.op is not None and len(p.clauses()) == 3]
    assert {p.op for p in compound} == {"And", "Or"} and all(p.bare == 1 for p in compound)
    assert rl.regions(LANGUAGE, "A move from (px, py) to (x, y) needs y > 3.") == [(False, "y > 3")]
    assert rl.regions(LANGUAGE, "A pursuer may move only if y > 3.") == [(False, "y > 3")]
    assert (True, "y == 3") in rl.regions(LANGUAGE, "Pursuers may not move to (x, y) when y == 3.")


def test_clause_training_answers_each_clause_with_its_primitive_or_none():
    pairs = LANGUAGE.examples(30, seed=3)
    data = rl.clause_training(LANGUAGE, pairs)
    answers = [answer.strip() for _, _, answer in data]
    assert answers.count("none") == len(answers) // 2
    for _, prompt, answer in data:
        clause = prompt.removeprefix("Clause: ").removesuffix("\nProgram:")
        if answer.strip() != "none":
            program = rl.parse_program(answer)
            assert clause in rl.own_clauses(LANGUAGE, program)


def test_readings_group_by_what_they_forbid():
    text = "Pursuers may not enter column 5 or row 7."
    scored = [(-0.1, ("Or", ("column", 5), ("row", 7))), (-0.5, ("Or", ("row", 7), ("column", 5))),
              (-2.0, ("column", 5))]
    readings = rl.rank(LANGUAGE, text, scored)
    assert [r.votes for r in readings] == [2, 1] and readings[0].score == -0.1
    assert readings[0].uses_every_number and not readings[1].uses_every_number
    assert readings[0].english == "the move ends in column x = 5 or the move ends in row y = 7"


def test_the_picture_marks_closed_and_partly_closed_cells():
    lines = rp.picture(("Or", ("cell", 3, 4), ("wall_x", 9, 4, 10))).splitlines()
    row4 = next(line for line in lines if line.endswith("y=4"))
    assert row4[3] == "#" and row4[9] == "+" and row4[0] == "."


def test_the_student_answers_only_programs_with_the_texts_numbers():
    """The real (untuned) student, constrained: whatever it reads, each answer is a program of
    the language whose text-stated numbers all appear in the rule (or, for a box, are the
    board's edges)."""
    from ldengine.models.loading import load_student
    text = "A move from (px, py) to (x, y) is now forbidden when the move ends in row y = 4."
    readings = rl.read(load_student(), LANGUAGE, text, margin=50.0)
    for reading in readings:
        for program in reading.programs:
            rp.region(program)
            for prim in rl.primitives_in(program, LANGUAGE):
                params = LANGUAGE.primitives[prim[0]]
                # a box may also take the board's edges ("columns 3 to 7" is rectangle(3, 7, 0, 20))
                edges = {0, rs.SIZE - 1} if len(params) == 4 else set()
                assert all(a in {4, *edges} for a, allowed in zip(prim[1:], params) if allowed is None), program


def test_a_reading_compiles_verifies_and_stores_with_its_program(tmp_path):
    """The reading the examples agree with is compiled, verified in the worker and stored
    with its program; the stored rule is rebuilt from the program; --yes refuses readings
    that disagree, and a reading no example fits is refused."""
    from ldengine.emergency.read import compile_reading
    from ldengine.emergency.rule import stored_rule
    from ldengine.emergency.store import save
    from ldengine.registry import Registry
    text = "Pursuers may not stop in column 5 or row 7."
    readings = rl.rank(LANGUAGE, text, [(-0.2, ("Or", ("column", 5), ("row", 7))), (-0.3, ("column", 5))])
    chosen, why = compile_reading(LANGUAGE, readings, text, unanimous=True)
    assert chosen is None and "disagree" in why
    chosen, why = compile_reading(LANGUAGE, readings, text, allowed=[((4, 5), (5, 5))])
    assert chosen is None and "agrees with" in why
    chosen, why = compile_reading(LANGUAGE, readings, text, allowed=[((8, 6), (8, 7))])
    assert chosen is not None and chosen.reading.text == "column(5)"
    chosen, why = compile_reading(LANGUAGE, readings, text, forbidden=[((8, 6), (8, 7))], unanimous=True)
    assert chosen is not None and chosen.reading.text == "Or(column(5), row(7))", why
    written = chosen.verified(seed=3)
    assert written.passed, written.attempts[-1].check.line()
    path = save(written, folder=tmp_path)
    import json
    provenance = json.loads(path.with_suffix(".json").read_text())
    assert provenance["program"] == "Or(column(5), row(7))" and provenance["english"] == readings[0].english
    rebuilt = stored_rule(Registry.load(), "pursuit", provenance)
    assert rebuilt.name == chosen.kind.name
    assert not rebuilt.allows({}, "pursuer", (4, 6), (5, 6)) and rebuilt.allows({}, "pursuer", (4, 6), (4, 5))


def test_the_commands_refuse_bad_input_in_one_line():
    """The committed reading adapter reads a plain rule; a task without a rule language, --read
    --yes without examples, --read with --param: refused in one line (the last two before any
    model loads)."""
    from click.testing import CliRunner
    from ldengine.cli import cli
    runner = CliRunner()
    result = runner.invoke(cli, ["rules", "read", "Pursuers may not enter column 7."])
    assert result.exit_code == 0 and "read as: column(7)" in result.output, result.output
    result = runner.invoke(cli, ["rules", "read", "Players may not hit on 17.", "--task", "twentyone"])
    assert result.exit_code != 0 and "Traceback" not in result.output and "rule language" in result.output, \
        result.output
    result = runner.invoke(cli, ["emergency", "Pursuers may not enter column 7.", "--read", "--yes"])
    assert result.exit_code == 2 and "--allow and one --forbid" in result.output, result.output
    result = runner.invoke(cli, ["emergency", "Pursuers may not enter column {x}.", "--read", "--param", "x=7"])
    assert result.exit_code == 2 and "--param and --kind are for writing" in result.output, result.output
    result = runner.invoke(cli, ["rules", "read", "No two pursuers may stand on the same cell."])
    assert result.exit_code != 0 and "Traceback" not in result.output


@pytest.mark.slow
def test_a_rule_read_with_examples_is_stored_with_its_program_and_signed(tmp_path, monkeypatch):
    """``emergency TEXT --read --yes`` with a bare cell and a move as examples (a bare cell gave
    a traceback): read, checked against the examples, verified in the worker, stored in the
    store with its program and a signed provenance; an example the reading contradicts refuses."""
    import json
    from click.testing import CliRunner
    from ldengine.cli import cli
    from ldengine.signing import signed
    monkeypatch.setenv("LDENGINE_EMERGENCY_DIR", str(tmp_path))
    runner = CliRunner()
    text = "Pursuers may not enter cells where y is an odd number, unless x equals 10."
    result = runner.invoke(cli, ["emergency", text, "--read", "--allow", "10,5", "--allow", "4,5>4,6",
                                 "--forbid", "4,5", "--yes"])
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    assert "Except(y_mod(2, 1), column(10))" in result.output
    [stored] = (tmp_path / "pursuit").glob("*.json")
    provenance = json.loads(stored.read_text())
    assert provenance["program"] == "Except(y_mod(2, 1), column(10))" and signed(provenance)
    result = runner.invoke(cli, ["emergency", text, "--read", "--allow", "4,5", "--forbid", "10,5", "--yes"])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    # a word the lexicon does not know: the reading is shown, --yes stores nothing and names the word
    text = "Pursuers may not enter the shaded cells of column 5."
    result = runner.invoke(cli, ["rules", "read", text])
    assert result.exit_code == 0 and "read as: column(5)" in result.output and "words not read: shaded" in result.output
    result = runner.invoke(cli, ["emergency", text, "--read", "--allow", "4,5", "--forbid", "5,5", "--yes"])
    assert result.exit_code == 1 and "'shaded'" in result.output and "Traceback" not in result.output, result.output
    assert len(list((tmp_path / "pursuit").glob("*.json"))) == 1


def test_words_outside_the_language_are_refused_with_the_reason():
    from click.testing import CliRunner
    from ldengine.cli import cli
    result = CliRunner().invoke(cli, ["rules", "read", "Pursuers may not come within 3 cells of the evader."])
    assert result.exit_code == 1 and "cannot say anything about the evader's cell" in result.output, result.output
    assert LANGUAGE.outside("No pursuer may stand still two turns in a row.")
    assert LANGUAGE.outside("Pursuers may not enter column 7 or row 3.") is None
    # an aside that leaves the evader alone is not a condition on it (no-stop-row's own words)
    assert LANGUAGE.outside("Pursuers may no longer stop on a cell (x, y) with y == 7 (they may jump over "
                            "that row; the evader may stand on it).") is None
    assert LANGUAGE.outside("Pursuers may not stop on row 7 (unless the evader is 2 cells away).")


from test_plugins import install_plugin, plugin_dir  # noqa: E402,F401  (a real plugin on sys.path)

RULE_PLUGIN = '''
from ldengine.hookspecs import hookimpl
from ldengine_plugins.pursuit.rule_program import PursuitRules


class Lamps(PursuitRules):
    task = "ldtest-lamps"


class Broken:
    task = "ldtest-broken"


@hookimpl
def ldengine_register_rule_languages(register):
    register(Lamps())
    register(Broken())
'''


def test_a_plugin_registers_a_rule_language_and_an_incomplete_one_is_refused(plugin_dir):
    """Through its entry point: the complete language is registered for its task; the one
    without the contract's members is refused, naming them, and the plugin shows as broken."""
    from ldengine.registry import Registry
    install_plugin(plugin_dir, "ldtest_rules", RULE_PLUGIN)
    reg = Registry.load()
    assert reg.rule_languages["ldtest-lamps"].plugin == "ldtest_rules"
    assert "ldtest-broken" not in reg.rule_languages
    error = {p.name: p for p in reg.plugins}["ldtest_rules"].error
    assert "rule language of 'ldtest-broken' without" in error and "english" in error


@pytest.fixture(scope="module")
def namer():
    """The retriever's real encoder over the language's taught wordings (encoded once per module)."""
    from ldengine.retriever import Encoder
    return rl.Namer(lambda: Encoder().encode, LANGUAGE)


@pytest.mark.slow
def test_the_namer_offers_the_primitives_whose_taught_words_are_nearest(namer):
    """The retriever's real encoder: a clause in taught words has its own primitive among the k nearest;
    the grammar it narrows to keeps only those names (all of them where none fits the numbers)."""
    named = namer(["the move ends in row y = 4", "the pursuer stays put"])
    assert "row" in named["the move ends in row y = 4"] and len(named["the pursuer stays put"]) == rl.NAMES_K
    assert "length" in named["the pursuer stays put"]
    grammar = rl.clause_grammar(LANGUAGE, [4], False, names=("row", "south_of"))
    assert '"row("' in grammar and '"south_of("' in grammar and "column" not in grammar
    assert "column" in rl.clause_grammar(LANGUAGE, [], False, names=("row",))     # no number: all names


def test_a_reader_with_neighbours_sees_the_nearest_taught_wordings_of_other_templates(namer):
    """``Namer.near``: one wording per primitive, the nearest last (next to the clause); in training a
    clause's own template is left out, so the reader learns to compare with other words; the prompt
    shows them as 'words -> program' lines before the clause."""
    clause = "the move ends in row y = 4"
    shown = namer.near([clause], 4)[clause]
    assert len(shown) == 4 and len({program[0] for _, program in shown}) == 4
    assert shown[-1][1][0] == "row" and rl.template_key(shown[-1][0]) == rl.template_key(clause)
    other = namer.near([clause], 4, exclude={clause: rl.template_key(clause)})[clause]
    assert all(rl.template_key(words) != rl.template_key(clause) for words, _ in other)
    prompt = rl.reader_prompt(clause, other)
    assert prompt.startswith("Near:\n") and prompt.endswith(f"Clause: {clause}\nProgram:")
    assert f"{other[0][0]} -> {rl.program_text(other[0][1])}\n" in prompt
    data = rl.clause_training(LANGUAGE, LANGUAGE.examples(10, seed=3), namer=namer, near=3)
    assert all(prompt.startswith("Near:\n") and prompt.count(" -> ") >= 3 for _, prompt, _ in data)
    for _, prompt, _ in data:
        lines = prompt.splitlines()
        asked = lines[-2].removeprefix("Clause: ")
        assert all(rl.template_key(line.rsplit(" -> ", 1)[0]) != rl.template_key(asked) for line in lines[1:-2])


def test_every_primitive_has_the_teachers_paraphrases_with_its_own_numbers():
    """Each primitive is taught in its training words and 11-12 paraphrases; each paraphrase states
    the primitive's numbers (a parity or a length by its words), and no connective's words."""
    for name, (_, params) in rp.PRIMITIVES.items():
        for args in itertools.product(*[(3, 7, 11, 15)[:len(params)] if p is None else p for p in params]):
            program = (name, *args)
            try:
                taught = rp.words(program)
            except rp.ProgramError:
                continue
            assert len(taught) >= len(rp.region(program).train_words) + 11, program
            for words in taught[2:]:
                stated = set(rl.numbers_in(words))
                assert set(a for a in args if not name.endswith("_mod") and name != "length") <= stated, (program, words)
                assert not any(f" {w} " in f" {words} " for w in ("unless", "except", "but", "either")), words


@pytest.mark.slow
def test_a_game_under_a_new_rule_reads_its_words_and_plays_the_compiled_function(tmp_path, monkeypatch):
    """``run --emergency KIND --read``: the ld agent reads the rule's words into a program,
    the engine compiles it, the isolated worker verifies it against the rule in force, and
    the game is played with it (no violation); the stored provenance records the program. A
    reading that fails verification is never adopted; --read without a rule is refused."""
    import json
    from click.testing import CliRunner
    from ldengine.cli import cli
    from ldengine.signing import signed
    monkeypatch.setenv("LDENGINE_EMERGENCY_DIR", str(tmp_path))
    runner = CliRunner()
    result = runner.invoke(cli, ["run", "pursuit", "--read"])
    assert result.exit_code == 2 and "name the rule with --emergency" in result.output, result.output
    out = tmp_path / "run.json"
    result = runner.invoke(cli, ["run", "pursuit", "--games", "1", "--seed", "9300", "--emergency", "restricted-area",
                                 "--emergency-seed", "5", "--read", "--json", str(out), "--quiet"])
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    assert "reading 1: rectangle(11, 15, 9, 13): passed" in result.output, result.output
    summary = json.loads(out.read_text())
    assert summary["violations"] == 0 and summary["success"] == 1.0, summary
    [stored] = (tmp_path / "pursuit").glob("restricted-area-*.json")
    provenance = json.loads(stored.read_text())
    assert provenance["read"] and provenance["program"] == "rectangle(11, 15, 9, 13)" and signed(provenance)
    assert provenance["attempts"][0]["passed"] and provenance["accepted_attempt"] == 1
