"""The OCI Distribution API (distribution-spec v1.1) at `/v2/`, over the store.

routes.py   the router: ping, token, version header; includes the two below
manifest_routes.py, blob_routes.py   thin routes: validate, authorize, call the service, map errors
state.py    `Registry`: what the routes share (store, config, uploads); `authorized`
service.py  registry logic over a `Store`: manifests, blobs, tags, referrers
uploads.py  blob upload sessions (`UploadStore`, on a directory shared by API processes)
s3_uploads.py  blob upload sessions in an S3 store's bucket, shared by API processes anywhere
lru.py      the small thread-safe LRU of the registry's caches
auth.py     API tokens, the bearer token endpoint, HMAC-signed tokens, basic auth
config.py   `RegistryConfig`: what the settings say about the registry
errors.py   `RegistryHTTPError`: the spec's error codes and their HTTP status
"""
