//! One Postfix instance as the postfix command sees it: its main.cf, the
//! installation directories main.cf names, its queue layout, and who may
//! control it.

use std::path::{Path, PathBuf};

use libmail::config::Config;
use libmail::log;
use libmail::queue_layout::Layout;

use crate::Options;

pub struct Instance {
    pub config: Config,
    pub config_dir: PathBuf,
    pub command_directory: PathBuf,
    pub daemon_directory: PathBuf,
    pub queue_directory: PathBuf,
    pub layout: Layout,
    pub verbose: u8,
    pub debug: bool,
}

impl Instance {
    pub fn new(config: Config, options: &Options) -> Result<Instance, String> {
        let dir = |name: &str| -> Result<PathBuf, String> {
            config
                .string(name)
                .map(PathBuf::from)
                .map_err(|e| e.to_string())
        };
        let layout = Layout::from_config(&config).map_err(|e| e.to_string())?;
        Ok(Instance {
            config_dir: config.config_dir().to_path_buf(),
            command_directory: dir("command_directory")?,
            daemon_directory: dir("daemon_directory")?,
            queue_directory: dir("queue_directory")?,
            layout,
            verbose: options.verbose,
            debug: options.debug,
            config,
        })
    }

    /// As Postfix: only the superuser controls the mail system, except
    /// in unprivileged mode, where mail_owner is the invoking user.
    pub fn refuse_strangers(&self) {
        let accounts = &self.layout.accounts;
        if accounts.unprivileged && accounts.mail_uid != accounts.me {
            log::error("to submit mail, use the Postfix sendmail command");
            log::fatal("the postfix command is reserved for the superuser");
        }
    }

    pub fn unprivileged(&self) -> bool {
        self.layout.accounts.unprivileged
    }

    /// Says once that owners are left alone (DESIGN.md §6).
    pub fn note_unprivileged(&self) {
        if self.unprivileged() {
            let me = &self.layout.accounts.me_name;
            log::info(format_args!(
                "unprivileged mode is on: {me} is not root, so everything belongs to {me} and no owner is changed"
            ));
        }
    }

    pub fn master_program(&self) -> PathBuf {
        self.daemon_directory.join("master")
    }

    pub fn pid_file(&self) -> PathBuf {
        self.layout.master_pid_file()
    }

    pub fn master_cf(&self) -> PathBuf {
        self.config_dir.join("master.cf")
    }

    /// Postfix's "can't do much without these in place": the directories
    /// and the master program. The queue directory is required only when
    /// the verb does not create it.
    pub fn require_installation(&self, need_queue: bool) -> Result<(), String> {
        let require = |path: &Path, what: &str| -> Result<(), String> {
            if path.is_dir() {
                Ok(())
            } else {
                Err(format!("no Postfix {what} {}!", path.display()))
            }
        };
        require(&self.command_directory, "command directory")?;
        require(&self.daemon_directory, "daemon directory")?;
        if !self.master_program().is_file() {
            return Err(format!(
                "no Postfix master program {}!",
                self.master_program().display()
            ));
        }
        require(&self.config_dir, "configuration directory")?;
        if need_queue {
            require(&self.queue_directory, "queue directory")?;
        }
        Ok(())
    }
}
