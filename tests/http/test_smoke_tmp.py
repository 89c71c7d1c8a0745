import uuid
from tests.support import actor_headers, multipart_body, upload_fields, pdf_bytes


async def test_upload_then_list(client):
    entity = uuid.uuid4()
    headers = actor_headers()
    body, ctype = multipart_body(upload_fields(entity), ("a.pdf", pdf_bytes(100), "application/pdf"))
    r = await client.post("/api/v1/documents/upload", data=body, headers={**headers, "Content-Type": ctype})
    assert r.status_code == 201, await r.get_data()
    body, ctype = multipart_body(upload_fields(entity), ("a.pdf", pdf_bytes(100), "application/pdf"), file_first=True)
    r = await client.post("/api/v1/documents/upload", data=body, headers={**headers, "Content-Type": ctype})
    assert r.status_code == 201, await r.get_data()
    r = await client.get(f"/api/v1/documents/{entity}", headers=headers)
    assert len((await r.get_json())["documents"]) == 2
