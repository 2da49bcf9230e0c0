"""fpdf2's replaced internals (app.render.patches): installed on purpose, never by an import; same bytes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

import fpdf.syntax
from fpdf.actions import URIAction
from fpdf.annotations import AnnotationDict
from fpdf.syntax import PDFObject, PDFString

from app.render import patches
from app.render.options import RenderOptions
from app.render.pdf import render_ticket_pdf
from app.render.pool import ProcessPoolRenderer
from app.workflow.ports import EmbeddedFile

from .helpers import ARCHIVED_AT, body_article

REPO = Path(__file__).resolve().parents[2]
LINE = "Grüße aus Mühlenbach: die Rechnung 2025-0117 enthält Position 3 doppelt. " * 2


def test_importing_app_render_patches_nothing_and_the_render_process_initialiser_does():
    script = textwrap.dedent(
        """
        import importlib, os, pkgutil, sys
        sys.path.insert(0, sys.argv[1])
        import fpdf.annotations, fpdf.syntax
        def current():
            return (
                fpdf.syntax.PDFObject._build_obj_dict,
                fpdf.annotations.AnnotationDict.serialize,
                fpdf.syntax.camel_case,
                fpdf.syntax.zlib,
            )
        stock = current()
        import app.render
        for module in pkgutil.iter_modules(app.render.__path__, "app.render."):
            importlib.import_module(module.name)
        from app.render import patches, pool
        untouched = current() == stock
        print(untouched, patches.installed())
        pool._start_render_process(os.getpid())
        pool._start_render_process(os.getpid())  # idempotent
        print(patches.installed(), fpdf.syntax.camel_case.__wrapped__ is stock[2])
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(REPO)], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert done.stdout.split("\n")[:2] == ["True False", "True True"]


def test_the_render_processes_run_with_the_patches():
    async def installed_in_render_process() -> bool:
        renderer = ProcessPoolRenderer(RenderOptions(), processes=1)
        try:
            return await asyncio.get_running_loop().run_in_executor(renderer._pool, patches.installed)
        finally:
            renderer.close()

    assert asyncio.run(installed_in_render_process())


def test_fast_object_dicts_serialise_every_object_as_fpdf2_does():
    html = "<p>Some <b>bold</b> text with <a href='https://example.com'>a link</a></p>" + LINE
    articles = [body_article(html, content_type="text/html")]
    embedded = (EmbeddedFile("note.txt", b"original", "text/plain", "Source", "an original"),)

    def render(pdfa: bool) -> bytes:
        return render_ticket_pdf(
            {"number": "1", "title": "T"},
            articles,
            ["t"],
            archived_at=ARCHIVED_AT,
            options=RenderOptions(pdfa=pdfa),
            embedded=embedded,
        ).data

    assert patches.installed()  # tests/render/conftest.py
    fast = [render(True), render(False)]
    patches.uninstall_object_dicts()
    try:
        assert not patches.installed()
        assert PDFObject._build_obj_dict is patches.STOCK_BUILD_OBJ_DICT
        assert AnnotationDict.serialize is patches.STOCK_ANNOTATION_SERIALIZE
        assert fpdf.syntax.camel_case is patches.STOCK_CAMEL_CASE
        assert [render(True), render(False)] == fast
    finally:
        patches.install_object_dicts()
    assert patches.installed()


def test_fast_object_dicts_see_instance_attributes_and_skip_methods():
    class Thing(PDFObject):
        constant = 7

        def method(self) -> int:
            return 1

        @property
        def computed(self) -> str:
            return "/Computed"

    thing = Thing()
    thing.id = 3
    thing.some_value = 5
    thing.method = "shadowed"  # an instance attribute named like a method is a key
    thing._private = 1
    assert (
        patches._fast_build_obj_dict(thing)
        == patches.STOCK_BUILD_OBJ_DICT(thing)
        == {"/Computed": "/Computed", "/Constant": 7, "/Method": "shadowed", "/SomeValue": 5}
    )


def test_fast_annotation_dicts_serialise_as_fpdf2_does():
    every_field = AnnotationDict(
        "Text",
        x=10.5,
        y=700.25,
        width=80,
        height=12,
        contents="Grüße (a note)",
        action=URIAction("https://example.com/a?b=(c)"),
        color=(0.1, 0.2, 0.3),
        title="Zammad",
        quad_points=(1, 2, 3, 4, 5, 6, 7, 8),
        border_width=1,
        ink_list=(1.0, 2.0),
        default_appearance="/Helv 0 Tf",
    )
    link = AnnotationDict("Link", x=1, y=2, width=3, height=4, dest=PDFString("chapter", encrypt=True))
    for annotation in (every_field, link):
        fast = patches._fast_annotation_serialize(annotation)
        assert fast == patches.STOCK_ANNOTATION_SERIALIZE(annotation)
        assert fast.startswith("<<") and "/Type /Annot" in fast
    assert "/Contents" in patches._fast_annotation_serialize(every_field)
