DELETE FROM pushers WHERE app_id = 'm.http' AND pushkey = 'fcm-pk-ZXhhbXBsZQ9a8b7c' AND user_name = '@dave:example.org'
