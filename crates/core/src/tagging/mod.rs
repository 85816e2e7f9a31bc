/*!
Data-use tagging: the `ohsoft-data-use` structured header and the signed `ohsoft-data-use-token`.
The signing key is handed in; nothing here reads files or the clock.
*/
