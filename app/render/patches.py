"""Process-wide replacements of fpdf2 internals, installed on purpose with :func:`install`.

Importing :mod:`app.render` changes nothing in fpdf2. A process that renders calls
:func:`install` once before its first document: the render processes do in their
initialiser (:mod:`app.render.pool`), and so does every entry point that renders in its
own process (``python -m app render``, :class:`app.render.pool.InlineRenderer`, the render
benchmark, the tests). :func:`install` is idempotent; :func:`uninstall` puts fpdf2's own
code back (the benchmark and tests compare the two). The PDF bytes are the same either way.

What is replaced (fpdf2 2.8.x's ``fpdf.syntax``):

* ``PDFObject._build_obj_dict``, which serialises every PDF object of a document (~170 for
  a 20-article ticket): fpdf2 lists the object's names with ``dir()`` and reads each,
  methods included, to skip the callables. :func:`_fast_build_obj_dict` lists a class's
  candidate keys once and reads only those and the instance's own attributes;
* ``AnnotationDict.serialize`` (``fpdf.annotations``), the same ``dir()`` walk for every
  annotation, e.g. each link of an HTML body: :func:`_fast_annotation_serialize` reads the
  class's candidate keys only;
* ``camel_case``, called for every key of every object, is memoised;
* the ``zlib`` module that ``fpdf.syntax`` and ``fpdf.image_parsing`` compress every stream
  with is :data:`app.render.deflate.FPDF_ZLIB`: ISA-L's deflate in place of zlib's. Unlike
  the two above, this changes the compressed bytes (not what they decompress to).
"""

from __future__ import annotations

import functools
import inspect
import types
import zlib
from typing import TYPE_CHECKING

import fpdf.image_parsing
import fpdf.syntax
from fpdf.annotations import AnnotationDict
from fpdf.syntax import PDFObject, build_obj_dict, create_dictionary_string

from app.render.deflate import FPDF_ZLIB

if TYPE_CHECKING:
    from fpdf.encryption import StandardSecurityHandler

#: fpdf2's own ``PDFObject._build_obj_dict`` and ``camel_case``, as imported (what
#: :func:`install` replaces and :func:`uninstall` restores; the tests compare against them).
STOCK_BUILD_OBJ_DICT = PDFObject._build_obj_dict
STOCK_CAMEL_CASE = fpdf.syntax.camel_case
#: fpdf2's own ``AnnotationDict.serialize``, likewise.
STOCK_ANNOTATION_SERIALIZE = AnnotationDict.serialize

_NOT_KEYS = ("id", "ref")  # fpdf2's build_obj_dict leaves these out, as every ``_`` name
_class_keys: dict[type, tuple[str, ...]] = {}


def _keys_of_class(cls: type) -> tuple[str, ...]:
    """The names ``dir()`` gives for instances of ``cls`` that fpdf2 may serialise: public,
    not ``id``/``ref``, and not a method (its value would be callable, which fpdf2 skips)."""
    keys = _class_keys.get(cls)
    if keys is None:
        keys = _class_keys[cls] = tuple(
            name
            for name in dir(cls)
            if not name.startswith("_")
            and name not in _NOT_KEYS
            and not isinstance(
                inspect.getattr_static(cls, name), (types.FunctionType, staticmethod, classmethod)
            )
        )
    return keys


def _fast_build_obj_dict(
    self: PDFObject, security_handler: StandardSecurityHandler | None = None
) -> dict[str, object]:
    """fpdf2 2.8's ``PDFObject._build_obj_dict``: the same dictionary, in the same (sorted)
    key order, from the class's candidate keys (computed once per class) and the instance's
    own public attributes, instead of ``dir()`` and a read of every method."""
    keys: tuple[str, ...] | list[str] = _keys_of_class(type(self))
    own = getattr(self, "__dict__", None)
    if own:
        extra = [key for key in own if not key.startswith("_") and key not in _NOT_KEYS]
        if extra:
            keys = sorted(set(keys).union(extra))
    return build_obj_dict(
        {key: getattr(self, key) for key in keys}, _security_handler=security_handler, _obj_id=self.id
    )


def _fast_annotation_serialize(
    self: AnnotationDict,
    _security_handler: StandardSecurityHandler | None = None,
    _obj_id: int | None = None,
) -> str:
    """fpdf2 2.8's ``AnnotationDict.serialize``: the same ``<< … >>`` string, from the class's
    candidate keys (``__slots__``: no instance attributes of its own) instead of ``dir()``."""
    return create_dictionary_string(
        build_obj_dict(
            {key: getattr(self, key) for key in _keys_of_class(type(self))},
            _security_handler=_security_handler,
            _obj_id=_obj_id,
        )
    )


def install() -> None:
    """Every replacement of this module, in this process (:func:`install_object_dicts`,
    :func:`install_deflate`); idempotent. Relies on fpdf2 2.8.x internals
    (``fpdf2>=2.8.9,<2.9`` is pinned)."""
    install_object_dicts()
    install_deflate()


def uninstall() -> None:
    """fpdf2's own code back for every replacement (benchmarks, tests)."""
    uninstall_object_dicts()
    uninstall_deflate()


# Kept for `make bench` render: "fpdf2's object dictionaries / ours, CPU" (20 plain articles)
# and "Zammad mix, 20 articles: fpdf2's object dictionaries and annotations / ours".
def install_object_dicts() -> None:
    """Replace ``PDFObject._build_obj_dict`` with :func:`_fast_build_obj_dict` and
    ``AnnotationDict.serialize`` with :func:`_fast_annotation_serialize`, and memoise
    ``fpdf.syntax.camel_case``; idempotent. Same PDF bytes."""
    PDFObject._build_obj_dict = _fast_build_obj_dict  # type: ignore[method-assign]  # the patch itself
    AnnotationDict.serialize = _fast_annotation_serialize  # type: ignore[method-assign]  # likewise
    if fpdf.syntax.camel_case is STOCK_CAMEL_CASE:
        fpdf.syntax.camel_case = functools.lru_cache(maxsize=1024)(STOCK_CAMEL_CASE)


def uninstall_object_dicts() -> None:
    """Put fpdf2's own ``_build_obj_dict``, ``AnnotationDict.serialize`` and ``camel_case`` back."""
    PDFObject._build_obj_dict = STOCK_BUILD_OBJ_DICT  # type: ignore[method-assign]  # fpdf2's own back
    AnnotationDict.serialize = STOCK_ANNOTATION_SERIALIZE  # type: ignore[method-assign]  # likewise
    fpdf.syntax.camel_case = STOCK_CAMEL_CASE


# Kept for `make bench` render: "20 plain articles: fpdf2's zlib / ours, CPU".
def install_deflate() -> None:
    """fpdf2's streams compressed by ISA-L: ``fpdf.syntax.zlib`` and
    ``fpdf.image_parsing.zlib`` become :data:`app.render.deflate.FPDF_ZLIB`."""
    fpdf.syntax.zlib = FPDF_ZLIB
    fpdf.image_parsing.zlib = FPDF_ZLIB


def uninstall_deflate() -> None:
    """fpdf2's streams compressed by the standard library's ``zlib`` again."""
    fpdf.syntax.zlib = zlib
    fpdf.image_parsing.zlib = zlib


def installed() -> bool:
    """Whether :func:`install` is in effect in this process."""
    return (
        PDFObject._build_obj_dict is _fast_build_obj_dict
        and AnnotationDict.serialize is _fast_annotation_serialize
        and fpdf.syntax.camel_case is not STOCK_CAMEL_CASE
        and fpdf.syntax.zlib is FPDF_ZLIB
    )
