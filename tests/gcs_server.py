"""`python tests/gcs_server.py PORT BUCKET`: gcp-storage-emulator (in memory) with the generation preconditions that
tensorstore's OCDBT relies on for its atomic manifest updates and that the emulator ignores: downloads and metadata
reads answer ifGenerationMatch (412) and ifGenerationNotMatch (304) and carry x-goog-generation; uploads answer
ifGenerationMatch (412). Started by tests/gcs_emulator.py."""

import sys
from http import HTTPStatus

from gcp_storage_emulator.exceptions import NotFound
from gcp_storage_emulator.handlers import objects

_download, _get, _insert = objects.download, objects.get, objects.insert


def _generation(request, storage) -> str | None:
    try:
        obj = storage.get_file_obj(request.params["bucket_name"], request.params["object_id"])
    except NotFound:
        return None
    return str(obj["generation"])


def _refused(request, response, generation: str | None) -> bool:
    """Answer a precondition the object's generation fails; False when the request goes on."""
    match, not_match = (request.query.get(k, [None])[0] for k in ("ifGenerationMatch", "ifGenerationNotMatch"))
    if generation is None:
        if match not in (None, "0"):
            response.status = HTTPStatus.PRECONDITION_FAILED
            return True
        return False
    if match is not None and match != generation:
        response.status = HTTPStatus.PRECONDITION_FAILED
        return True
    if not_match is not None and not_match == generation:
        response.status = HTTPStatus.NOT_MODIFIED
        response["x-goog-generation"] = generation
        return True
    return False


def download(request, response, storage, *args, **kwargs):
    generation = _generation(request, storage)
    if generation is not None:
        if _refused(request, response, generation):
            return None
        response["x-goog-generation"] = generation
    return _download(request, response, storage, *args, **kwargs)


def get(request, response, storage, *args, **kwargs):
    if (request.query.get("alt") or [""])[0] == "media":
        return download(request, response, storage)
    generation = _generation(request, storage)
    if generation is not None and _refused(request, response, generation):
        return None
    return _get(request, response, storage, *args, **kwargs)


def insert(request, response, storage, *args, **kwargs):
    match = request.query.get("ifGenerationMatch", [None])[0]
    if match is not None:
        name = request.query.get("name", [None])[0]
        try:
            current = str(storage.get_file_obj(request.params["bucket_name"], name)["generation"])
        except NotFound:
            current = "0"
        if current != match:
            response.status = HTTPStatus.PRECONDITION_FAILED
            return None
    return _insert(request, response, storage, *args, **kwargs)


# the server's routing table holds the handler functions: replace them before it is imported
objects.download, objects.get, objects.insert = download, get, insert

if __name__ == "__main__":
    from gcp_storage_emulator.server import create_server

    port, bucket = int(sys.argv[1]), sys.argv[2]
    create_server("127.0.0.1", port, in_memory=True, default_bucket=bucket).run()  # until terminated
