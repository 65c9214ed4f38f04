"""Text files attached to a chat message: the model reads them after the message's text, they are
stored with the message (and read again on a retry), and too many or too big are refused with one
line before anything is stored."""

from __future__ import annotations

from server_harness import Served


def test_attached_files_go_into_the_context_and_are_stored(served: Served) -> None:
    conversation = served.client.post("/api/v2/conversations",
                                      json={"model": "gpt-4o-mini"}).json()["conversationId"]
    files = [{"name": "app.py", "mime": "text/x-python", "content": "print('hi')\n"},
             {"name": "notes.txt", "content": "ship on friday"}]
    served.sse(f"/api/v2/conversations/{conversation}/messages", method="POST",
               json_body={"inputs": "review these", "files": files})
    sent = served.gateway.requests[-1]["messages"][-1]
    assert sent["role"] == "user"
    assert sent["content"] == ('review these\n\n<file name="app.py">\nprint(\'hi\')\n\n</file>'
                               '\n\n<file name="notes.txt">\nship on friday\n</file>')
    stored = served.client.get(f"/api/v2/conversations/{conversation}").json()["messages"]
    question = stored[1]
    assert [f["name"] for f in question["files"]] == ["app.py", "notes.txt"]
    assert question["files"][1]["mime"] == "text/plain"

    served.sse(f"/api/v2/conversations/{conversation}/messages", method="POST",
               json_body={"id": question["id"], "is_retry": True})
    assert served.gateway.requests[-1]["messages"][-1]["content"] == sent["content"]


def test_too_many_or_too_big_files_are_refused(served: Served) -> None:
    conversation = served.client.post("/api/v2/conversations",
                                      json={"model": "gpt-4o-mini"}).json()["conversationId"]
    path = f"/api/v2/conversations/{conversation}/messages"
    many = [{"name": f"f{n}.txt", "content": "x"} for n in range(6)]
    big = [{"name": "big.txt", "content": "x" * 100_001}]
    for files in (many, big, [{"name": "", "content": "x"}]):
        answer = served.client.post(path, json={"inputs": "x", "files": files})
        assert answer.status_code == 422, answer.text
    assert len(served.client.get(f"/api/v2/conversations/{conversation}").json()[
        "messages"]) == 1
