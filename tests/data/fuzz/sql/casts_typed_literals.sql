SELECT ts::text, '2023-11-14 22:13:20'::timestamp, CAST('987654321' AS BIGINT), interval '17 minutes', received_ts::bigint FROM local_media_repository WHERE media_id = 'mediaIdQwErTy123'::text
