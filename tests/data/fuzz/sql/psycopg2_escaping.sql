INSERT INTO ratelimit_override (user_id, messages_per_second, burst_count) VALUES ('@o''reilly\\path:example.org',  -45000000000.0, NULL)
