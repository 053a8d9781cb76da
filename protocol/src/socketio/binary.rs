//! Binary values in packet data: placeholders and attachments.
