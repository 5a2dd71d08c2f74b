"""Original html bodies that try to hide, move, cover or fake the link block of the rebuilt email:
shared by tests/unit/mail/test_compose_safety.py (the structure) and
tests/system/test_email_browser.py (the rendering in Chromium)."""

from __future__ import annotations

FAKE_LIST = (
    '<h3>Attachments (1)</h3><ul><li><a href="https://evil.example/invoice.pdf.exe">invoice.pdf</a>'
    " (61.5 KB)</li></ul>"
)
COVER = "position:fixed;top:0;left:0;width:100%;height:100%;background:#fff;z-index:2147483647"

NASTY_ORIGINALS: dict[str, str] = {
    # The links were inserted before the last "</body>" found in original.lower(): each "İ" is two
    # characters in lower(), so they landed 40 characters late, inside the comment.
    "dotted capital I before </BODY>": "<html><body><p>" + "İ" * 40 + "</p></BODY><!--" + "x" * 80 + "-->",
    "unclosed hidden div": f"<p>Your files:</p>{FAKE_LIST}<div style=display:none>",
    "stray closing tags": f"</div></div></td></tr></table></body></html>{FAKE_LIST}<div style=\"{COVER}\">",
    "fixed overlay": f'<p>Hello</p><div style="{COVER}">{FAKE_LIST}</div>',
    "negative margin and transform": f'<div style="margin-top:-3000px;transform:translateY(-3000px)">{FAKE_LIST}</div>',
    "table tricks": f"<table><tr><td><div style=\"display:none\"></td></tr><tr><td>{FAKE_LIST}<table><tr><td>",
    "plaintext": f"{FAKE_LIST}<plaintext>",
    "xmp": f"{FAKE_LIST}<xmp>",
    "noscript": f'{FAKE_LIST}<noscript><div style="display:none">',
    "template": f"{FAKE_LIST}<template><div>",
    "unterminated comment": f"{FAKE_LIST}<!-- ",
    "CDATA": f"{FAKE_LIST}<![CDATA[ ",
    "textarea": f"{FAKE_LIST}<textarea>",
    "title": f"{FAKE_LIST}<title>",
    "style element": "<style>h3,ul,li,a{display:none!important}body>*:first-child{visibility:hidden}"
    f"*{{position:fixed!important;top:0}}</style>{FAKE_LIST}",
    "svg foreignObject": f'<svg><foreignObject width="2000" height="2000"><div style="{COVER}">{FAKE_LIST}</div>'
    "</foreignObject></svg>",
    "base and meta refresh": '<base href="https://evil.example/"><meta http-equiv="refresh" content="0;url=https://evil.'
    'example/">' + FAKE_LIST,
    "huge font": f'<div style="font-size:400px;line-height:400px">X</div>{FAKE_LIST}',
    "dialog and popover": f"<dialog open>{FAKE_LIST}</dialog><div popover>{FAKE_LIST}</div>",
}
