"""Markdown from the model is rendered without any way to run script or reach another host."""

from chat.markdown import _clean, render_markdown


def test_raw_html_is_shown_as_text():
    html = render_markdown("<script>alert(1)</script><img src=x onerror=alert(1)>")
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;" in html


def test_javascript_links_are_not_links():
    html = render_markdown("[x](javascript:alert(1)) [y](vbscript:msgbox) [z](data:text/html,hi)")
    assert "href" not in html


def test_images_from_other_hosts_lose_their_source():
    html = render_markdown(
        "![a](https://evil.example/p.png) ![b](//evil.example/q.png) ![c](/static/ok.png)"
    )
    assert "evil.example" not in html
    assert 'src="/static/ok.png"' in html


def test_links_open_safely_and_code_is_highlighted():
    html = render_markdown("[docs](https://example.com)\n\n```python\nprint('x')\n```")
    assert 'rel="noopener noreferrer nofollow"' in html
    assert '<code class="language-python">' in html and '<span class="nb">print</span>' in html


def test_a_fence_whose_language_is_only_what_python_splits_on_renders_as_plain_code():
    """markdown-it passes "\x85" (or "\x1c"...) as the fence's language, which Python's
    split() takes for white space: the highlighter raised IndexError, so the reply could not
    be rendered, while it streamed or when it was saved."""
    from chat.progressive import ProgressiveRenderer

    for mark in ("\x85", "\x1c", "\x1f"):
        text = f"Look:\n\n```{mark}\nx = 1\n```\n"
        html = render_markdown(text)
        assert "<pre><code" in html and "x = 1" in html
        renderer = ProgressiveRenderer()
        for char in text:
            renderer.feed(char)
        assert renderer.finish()[1] == html


def test_a_columns_alignment_is_a_class_of_its_cells():
    """markdown-it writes a column's alignment as a style attribute, which the sanitizer
    stripped (and the page's CSP would refuse): it is a class of the column's cells."""
    html = render_markdown("| a | b | c | d |\n|:--|--:|:-:|---|\n| 1 | 2 | 3 | 4 |\n")
    assert '<th class="align-left">a</th>' in html and '<td class="align-left">1</td>' in html
    assert '<th class="align-right">b</th>' in html and '<td class="align-right">2</td>' in html
    assert '<td class="align-center">3</td>' in html and "<td>4</td>" in html
    assert "style" not in html


def test_a_cells_class_is_only_an_alignment():
    def cleaned(cells: str) -> str:
        return _clean(f"<table><tbody><tr>{cells}</tr></tbody></table>")

    assert "<td>1</td><th>2</th>" in cleaned('<td class="align-right x">1</td><th class="e">2</th>')
    assert '<td class="align-center">1</td>' in cleaned('<td class="align-center" style="x">1</td>')
