"""The HTTP edge both API services share: Bearer keys, RFC 9457 problem details, their OpenAPI."""
