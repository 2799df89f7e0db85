"""Tiny document fixtures for the index tests, made at test time (no binary files in the repo)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from index.embed import HashEmbedder


class CountingEmbedder(HashEmbedder):
    """A real hash embedder that counts what it is asked to encode."""

    def __init__(self, dimension: int = 64, max_tokens: int = 128):
        super().__init__(dimension, max_tokens)
        self.calls = 0
        self.texts: list[str] = []

    def encode(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        self.texts.extend(texts)
        return super().encode(texts)


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def make_pdf(path: Path, pages: list[str]) -> Path:
    """A minimal valid PDF with one line of Helvetica text per page."""
    objects = ["<< /Type /Catalog /Pages 2 0 R >>", None,
               "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    kids = []
    for text in pages:
        stream = f"BT /F1 12 Tf 72 720 Td ({_escape(text)}) Tj ET"
        objects.append(f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream")
        content = len(objects)
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
                       f"/Resources << /Font << /F1 3 0 R >> >> /Contents {content} 0 R >>")
        kids.append(f"{len(objects)} 0 R")
    objects[1] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(kids)} >>"
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{o:010d} 00000 n \n" for o in offsets).encode()
    out += (f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\n"
            f"startxref\n{xref}\n%%EOF\n").encode()
    path.write_bytes(bytes(out))
    return path


def make_encrypted_pdf(path: Path, source: Path) -> Path:
    import pypdf

    writer = pypdf.PdfWriter(clone_from=str(source))
    writer.encrypt(user_password="secret", owner_password="owner", algorithm="RC4-128")
    with open(path, "wb") as handle:
        writer.write(handle)
    return path


def make_aes_encrypted_pdf(path: Path, source: Path) -> Path:
    """``source`` with an AES-256 (revision 6) ``/Encrypt`` dictionary added by an incremental
    update. Its key material is zeros, so no password opens it; pypdf reads it as the AES PDF
    it claims to be, which is what the tests need (pypdf can't write AES without the
    cryptography package)."""
    data = source.read_bytes()
    size = int(re.search(rb"/Size (\d+)", data).group(1))
    previous = int(re.search(rb"startxref\n(\d+)", data).group(1))
    encrypt = ("<< /Filter /Standard /V 5 /R 6 /Length 256 /P -4 /CF << /StdCF << /CFM /AESV3 "
               "/AuthEvent /DocOpen /Length 32 >> >> /StmF /StdCF /StrF /StdCF "
               f"/O <{'00' * 48}> /U <{'00' * 48}> /OE <{'00' * 32}> /UE <{'00' * 32}> "
               f"/Perms <{'00' * 16}> >>")
    out = bytearray(data)
    offset = len(out)
    out += f"{size} 0 obj\n{encrypt}\nendobj\n".encode()
    xref = len(out)
    out += (f"xref\n{size} 1\n{offset:010d} 00000 n \ntrailer\n<< /Size {size + 1} /Root 1 0 R "
            f"/Prev {previous} /Encrypt {size} 0 R /ID [<{'11' * 16}> <{'11' * 16}>] >>\n"
            f"startxref\n{xref}\n%%EOF\n").encode()
    path.write_bytes(bytes(out))
    return path


def make_docx(path: Path) -> Path:
    import docx

    document = docx.Document()
    document.add_heading("Handbook", level=1)
    document.add_paragraph("Welcome to the team handbook.")
    document.add_heading("Holidays", level=2)
    document.add_paragraph("Everyone gets twenty five days of paid holiday.")
    table = document.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text = "Office"
    table.rows[0].cells[1].text = "Berlin"
    document.save(path)
    return path


def write_corpus(root: Path, count: int, words: int = 60, prefix: str = "doc") -> list[Path]:
    """``count`` Markdown files with distinct, searchable words."""
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        body = " ".join(f"w{i}x{j % 17}" for j in range(words))
        path = root / f"{prefix}{i:04d}.md"
        path.write_text(f"# Title {i}\n\n## Part A\n\nTopic{i} {body}\n\n## Part B\n\n"
                        f"Second part of {prefix} {i}: subject{i} details.\n", encoding="utf-8")
        paths.append(path)
    return paths


def write_bot(root: Path, documents: dict[str, str], embedder: str = "hash:64",
              index: str = "") -> Path:
    """``root/bot.yaml``: a bot indexing ``root/docs`` (written from ``documents``, name to
    text) with a hashing ``embedder``, no score threshold, and ``index`` lines (YAML, indented
    two spaces) added to its index section."""
    docs = root / "docs"
    docs.mkdir()
    for name, text in documents.items():
        (docs / name).write_text(text)
    config = root / "bot.yaml"
    config.write_text(f'models:\n  embedder: "{embedder}"\nindex:\n  paths: [docs]\n{index}'
                      "retrieval:\n  min_score: null\n")
    return config
