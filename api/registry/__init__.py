"""The OCI Distribution API (distribution-spec v1.1) at `/v2/`, over the store.

routes.py   thin FastAPI routes: validate, authorize, call the service, map errors
service.py  registry logic over a `Store`: manifests, blobs, tags, referrers
uploads.py  blob upload sessions (`UploadStore`, on a directory shared by API processes)
auth.py     API tokens, the bearer token endpoint, HMAC-signed tokens, basic auth
config.py   `RegistryConfig`: what the settings say about the registry
errors.py   `RegistryHTTPError`: the spec's error codes and their HTTP status
"""
