SELECT user_id FROM users WHERE is_guest = TRUE AND deactivated = false AND shadow_banned IS NOT TRUE AND approved IS NULL AND consent_version IS NOT NULL
