UPDATE users SET password_hash = '$2b$12$WApznUOJfkEGSmYRfnkrPOr7Ijq5wZMQn3kX0cB1YhT0xQxqC8Ogu' WHERE name = '@carol:example.org'
