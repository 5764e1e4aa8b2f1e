INSERT INTO device_lists_remote_cache (user_id, device_id, content)
VALUES ('@bob:remote.example.net', 'BOBSPHONE', '{"keys": {"ed25519:BOBSPHONE": "Zm9vYmFyYmF6cXV4"}, "algorithms": ["m.olm.v1.curve25519-aes-sha2"]}')
ON CONFLICT (user_id, device_id) DO UPDATE SET content = EXCLUDED.content
