"""Text from outside (a file name, a key inside a checkpoint, a URL's query) shown in Markdown as itself."""
from __future__ import annotations

import re

# Characters with a meaning in Streamlit's Markdown (CommonMark + GFM, LaTeX $…$, :color[…] directives): a
# backslash makes any ASCII punctuation literal (CommonMark §2.4).
_ACTIVE = re.compile(r"[\\`*_{}\[\]()<>#+!|~$&@^]")
_WORD_JOINER = "\u2060"  # zero width: breaks an emoji shortcode :name: without changing what is seen


def literal(text: object) -> str:
    """Markdown that renders as `text` itself: a file name like `**x**.pt` or `[a](http://x).pt` stays
    that string, never bold or a link. Beyond the escapes: a colon before a non-space is escaped (no
    `http://` autolink, no `:red[…]` directive) and followed by a word joiner (remark-emoji replaces
    `:name:` after escapes are resolved); `www.` loses its autolink; a leading list or heading marker is
    escaped; one line."""
    text = " ".join(str(text).split())
    text = _ACTIVE.sub(lambda m: "\\" + m.group(), text)
    text = re.sub(r":(?=\S)", lambda m: "\\:" + _WORD_JOINER, text)
    text = re.sub(r"(?i)(www)\.", r"\1\\.", text)
    text = re.sub(r"^([-=])", r"\\\1", text)  # a list item or a setext underline
    return re.sub(r"^(\d+)\.", r"\1\\.", text)  # an ordered list item
