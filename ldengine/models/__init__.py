"""Student backends: a small LM that selects among candidate functions.

Light to import: torch, transformers and peft load inside the functions that
use them, so ``ldengine --help`` stays fast (``tests/test_architecture.py`` keeps heavy imports out of module tops).
"""
from ldengine.contracts import Selection, Student
from ldengine.models.base import load_by_name, option_row, selection_context
from ldengine.models.files import cache_root, default_student_path
from ldengine.models.loading import load_student
from ldengine.models.student import TransformersStudent

__all__ = ["Selection", "Student", "TransformersStudent", "cache_root", "default_student_path",
           "load_by_name", "load_student", "option_row", "selection_context"]
