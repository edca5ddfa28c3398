//! window-agg on Memcached (issue 4). Placeholder until the backend lands.

use std::io::Write;

use super::window::{Summary, Window};
use super::Config;
use crate::error::{Error, Result};
use crate::output::Output;

pub struct Shared;

impl Shared {
    pub fn connect(_servers: &str, _config: &Config) -> Result<Self> {
        Err(Error::usage("--memcached is not built yet"))
    }

    pub fn sync(&mut self, _window: &mut Window, _summary: &Summary) -> Option<Summary> {
        None
    }

    pub fn finish(&mut self, _window: &mut Window) -> Result<()> {
        Ok(())
    }
}

pub fn read(_config: &Config, _out: &mut Output<impl Write>) -> Result<()> {
    Err(Error::usage("--read is not built yet"))
}
